//! The basic class through lapin: mandatory returns, message properties,
//! consumers (no-ack, exclusive, tags, cancel in both directions), prefetch,
//! basic.get, ack / nack / reject with multiple and requeue, unknown delivery
//! tags and recover. RabbitMQ's behaviour is the reference.

use std::time::Duration;

use tether_e2e::Gateway;
use tether_e2e::amqp::*;

/// Publishes `n` messages `"0"`, `"1"`, ... to `queue` and waits until they are there.
async fn fill(ch: &Channel, queue: &str, n: u32) {
    for i in 0..n {
        publish(ch, "", queue, i.to_string().as_bytes()).await;
    }
    assert_eq!(await_message_count(ch, queue, n, WAIT).await, n);
}

/// The next delivery of either consumer within `wait`.
async fn next_of_either(
    a: &mut Consumer,
    b: &mut Consumer,
    wait: Duration,
) -> Option<lapin::message::Delivery> {
    tokio::select! {
        d = next(a, wait) => d,
        d = next(b, wait) => d,
    }
}

fn strings(v: Vec<Vec<u8>>) -> Vec<String> {
    v.into_iter()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

// ----- publishing ----------------------------------------------------------

#[tokio::test]
async fn mandatory_unroutable_message_is_returned_with_no_route() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_exchange(&ch, "nowhere-x", ExchangeKind::Direct).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = ch
        .basic_publish(
            "nowhere-x".into(),
            "no.binding".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"bounce",
            BasicProperties::default().with_message_id("r-1".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "a returned message is still confirmed");
    let returned = confirm.take_message().expect("basic.return");
    assert_eq!(returned.reply_code, 312, "NO_ROUTE");
    assert_eq!(returned.reply_text.as_str(), "NO_ROUTE");
    assert_eq!(returned.delivery.exchange.as_str(), "nowhere-x");
    assert_eq!(returned.delivery.routing_key.as_str(), "no.binding");
    assert_eq!(returned.delivery.data, b"bounce");
    assert_eq!(
        returned
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("r-1")
    );
}

#[tokio::test]
async fn mandatory_return_reaches_publisher_without_confirms() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.basic_publish(
        "".into(),
        "no-such-queue".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"bounce",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let returned = tokio::time::timeout(WAIT, async {
        loop {
            let r = ch.wait_for_confirms().await.unwrap();
            if !r.is_empty() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("basic.return in time");
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].reply_code, 312);
    assert_eq!(returned[0].delivery.routing_key.as_str(), "no-such-queue");
    assert_eq!(returned[0].delivery.data, b"bounce");
}

#[tokio::test]
async fn routable_or_non_mandatory_messages_are_not_returned() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "routable", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for (key, mandatory) in [("routable", true), ("unroutable", false)] {
        let c = ch
            .basic_publish(
                "".into(),
                key.into(),
                BasicPublishOptions {
                    mandatory,
                    ..Default::default()
                },
                b"x",
                BasicProperties::default(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
        assert_eq!(c, lapin::Confirmation::Ack(None), "{key}");
    }
}

#[tokio::test]
async fn priority_and_expiration_properties_reach_the_consumer() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "props-pe", FieldTable::default()).await;
    let mut consumer = consume(&ch, "props-pe", "", true).await;
    publish_with(
        &ch,
        "",
        "props-pe",
        b"x",
        BasicProperties::default()
            .with_priority(7)
            .with_expiration("60000".into()),
    )
    .await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    assert_eq!(d.properties.priority(), &Some(7));
    assert_eq!(
        d.properties.expiration().as_ref().map(|s| s.as_str()),
        Some("60000")
    );
}

#[tokio::test]
async fn every_content_property_arrives_intact() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "props-all", FieldTable::default()).await;
    let mut consumer = consume(&ch, "props-all", "", true).await;
    let nested = table(&[
        ("inner", long_str("value")),
        (
            "deeper",
            AMQPValue::FieldTable(table(&[("n", AMQPValue::LongInt(-3))])),
        ),
    ]);
    let array = AMQPValue::FieldArray(
        vec![
            AMQPValue::LongInt(1),
            long_str("two"),
            AMQPValue::Boolean(true),
            AMQPValue::FieldTable(table(&[("k", long_str("v"))])),
        ]
        .into(),
    );
    let headers = table(&[
        ("str", long_str("text ✓")),
        ("bool", AMQPValue::Boolean(false)),
        ("i8", AMQPValue::ShortShortInt(-8)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-1600)),
        ("u16", AMQPValue::ShortUInt(60000)),
        ("i32", AMQPValue::LongInt(-320_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-6_400_000_000)),
        ("f32", AMQPValue::Float(1.5)),
        ("f64", AMQPValue::Double(-2.25)),
        ("ts", AMQPValue::Timestamp(1_700_000_000)),
        ("bytes", AMQPValue::ByteArray(vec![0u8, 1, 254, 255].into())),
        ("void", AMQPValue::Void),
        ("table", AMQPValue::FieldTable(nested)),
        ("array", array),
    ]);
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers.clone())
        .with_delivery_mode(2)
        .with_priority(3)
        .with_correlation_id("corr-42".into())
        .with_reply_to("replies".into())
        .with_expiration("120000".into())
        .with_message_id("msg-7".into())
        .with_timestamp(1_712_345_678)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("tether-e2e".into());
    publish_with(&ch, "", "props-all", b"{}", props.clone()).await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    let got = &d.properties;
    assert_eq!(got.headers().as_ref(), Some(&headers), "headers");
    assert_eq!(got.content_type(), props.content_type());
    assert_eq!(got.content_encoding(), props.content_encoding());
    assert_eq!(got.delivery_mode(), &Some(2));
    assert_eq!(got.priority(), &Some(3));
    assert_eq!(got.correlation_id(), props.correlation_id());
    assert_eq!(got.reply_to(), props.reply_to());
    assert_eq!(got.expiration(), props.expiration());
    assert_eq!(got.message_id(), props.message_id());
    assert_eq!(got.timestamp(), &Some(1_712_345_678));
    assert_eq!(got.kind(), props.kind());
    assert_eq!(got.user_id(), props.user_id());
    assert_eq!(got.app_id(), props.app_id());
    assert_eq!(got, &props, "every property, nothing added");
}

// ----- consumers -----------------------------------------------------------

#[tokio::test]
async fn no_ack_consumer_takes_messages_for_good() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "fire-forget", FieldTable::default()).await;
    fill(&ch, "fire-forget", 3).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, "fire-forget", "", true).await;
    assert_eq!(
        strings(take(&mut consumer, 3, false).await),
        ["0", "1", "2"]
    );
    cch.close(200, "OK".into()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        message_count(&ch, "fire-forget").await,
        0,
        "no-ack deliveries must not come back when the channel closes"
    );
}

#[tokio::test]
async fn exclusive_consumer_refuses_other_consumers_with_access_refused() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "solo", FieldTable::default()).await;
    let exclusive = BasicConsumeOptions {
        exclusive: true,
        ..Default::default()
    };
    let _owner = ch
        .basic_consume(
            "solo".into(),
            "owner".into(),
            exclusive,
            FieldTable::default(),
        )
        .await
        .expect("exclusive consume");
    let ch2 = conn.create_channel().await.unwrap();
    let r = ch2
        .basic_consume(
            "solo".into(),
            "intruder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_eq!(expect_code(r, "second consumer on an exclusive one"), 403);

    // And an exclusive consumer cannot join a queue that has consumers.
    declare_queue(&ch, "crowded", FieldTable::default()).await;
    let _plain = consume(&ch, "crowded", "plain", true).await;
    let ch3 = conn.create_channel().await.unwrap();
    let r = ch3
        .basic_consume(
            "crowded".into(),
            "wants-all".into(),
            exclusive,
            FieldTable::default(),
        )
        .await;
    assert_eq!(expect_code(r, "exclusive consume on a busy queue"), 403);
}

#[tokio::test]
async fn consumer_tags_are_kept_or_generated() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "tagged", FieldTable::default()).await;
    let mine = consume(&ch, "tagged", "my-tag", true).await;
    assert_eq!(mine.tag().as_str(), "my-tag");
    let generated = consume(&ch, "tagged", "", true).await;
    let tag = generated.tag().as_str().to_owned();
    assert!(tag.starts_with("amq.ctag-"), "server tag {tag}");
    let other = consume(&ch, "tagged", "", true).await;
    assert_ne!(other.tag().as_str(), tag, "generated tags are unique");
}

#[tokio::test]
async fn cancelled_consumer_receives_nothing_more() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "cancelled", FieldTable::default()).await;
    let mut consumer = consume(&ch, "cancelled", "c", true).await;
    publish(&ch, "", "cancelled", b"before").await;
    assert_eq!(
        next(&mut consumer, WAIT).await.expect("delivery").data,
        b"before"
    );
    ch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .expect("cancel-ok");
    publish(&ch, "", "cancelled", b"after").await;
    assert!(
        next(&mut consumer, QUIET).await.is_none(),
        "delivery after cancel"
    );
    assert_eq!(
        await_message_count(&ch, "cancelled", 1, WAIT).await,
        1,
        "the message waits in the queue"
    );
}

#[tokio::test]
async fn deleting_a_queue_cancels_its_consumers() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "vanishing", FieldTable::default()).await;
    let mut consumer = consume(&ch, "vanishing", "watcher", false).await;
    let (_c2, ch2) = channel(gw.amqp.unwrap()).await;
    ch2.queue_delete("vanishing".into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    assert!(
        consumer_ends(&mut consumer, WAIT).await,
        "no basic.cancel from the server"
    );
    assert!(ch.status().connected(), "the channel stays open");
    declare_queue(&ch, "still-usable", FieldTable::default()).await;
}

// ----- prefetch ------------------------------------------------------------

#[tokio::test]
async fn prefetch_limits_unacked_deliveries_per_consumer() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "pf", FieldTable::default()).await;
    fill(&ch, "pf", 5).await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "pf", "", false).await;
    let first = next(&mut consumer, WAIT).await.expect("1st");
    let _second = next(&mut consumer, WAIT).await.expect("2nd");
    assert_quiet(&mut consumer, "a third delivery with prefetch 2").await;
    first.ack(BasicAckOptions::default()).await.unwrap();
    let third = next(&mut consumer, WAIT)
        .await
        .expect("one more after an ack");
    assert_eq!(third.data, b"2");
    assert_quiet(&mut consumer, "more than one after one ack").await;
}

#[tokio::test]
async fn per_consumer_prefetch_applies_to_each_consumer() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "pfa", FieldTable::default()).await;
    declare_queue(&ch, "pfb", FieldTable::default()).await;
    fill(&ch, "pfa", 4).await;
    fill(&ch, "pfb", 4).await;
    ch.basic_qos(2, BasicQosOptions { global: false })
        .await
        .unwrap();
    let mut a = consume(&ch, "pfa", "", false).await;
    let mut b = consume(&ch, "pfb", "", false).await;
    take(&mut a, 2, false).await;
    take(&mut b, 2, false).await;
    assert_quiet(&mut a, "consumer a beyond its prefetch").await;
    assert_quiet(&mut b, "consumer b beyond its prefetch").await;
}

#[tokio::test]
async fn global_prefetch_is_shared_by_the_channel() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "ga", FieldTable::default()).await;
    declare_queue(&ch, "gb", FieldTable::default()).await;
    fill(&ch, "ga", 4).await;
    fill(&ch, "gb", 4).await;
    ch.basic_qos(3, BasicQosOptions { global: true })
        .await
        .unwrap();
    let mut a = consume(&ch, "ga", "", false).await;
    let mut b = consume(&ch, "gb", "", false).await;
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(
            next_of_either(&mut a, &mut b, WAIT)
                .await
                .expect("delivery"),
        );
    }
    assert!(
        next_of_either(&mut a, &mut b, QUIET).await.is_none(),
        "a fourth delivery with a channel-wide prefetch of 3"
    );
    got[0].ack(BasicAckOptions::default()).await.unwrap();
    assert!(next_of_either(&mut a, &mut b, WAIT).await.is_some());
    let more = 1 + usize::from(next_of_either(&mut a, &mut b, QUIET).await.is_some());
    assert_eq!(more, 1, "one ack frees one slot");
}

// ----- basic.get -----------------------------------------------------------

#[tokio::test]
async fn basic_get_reports_remaining_count_then_get_empty() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "got", FieldTable::default()).await;
    fill(&ch, "got", 3).await;
    for (i, left) in [2u32, 1, 0].into_iter().enumerate() {
        let m = ch
            .basic_get("got".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .expect("get-ok");
        assert_eq!(m.delivery.data, i.to_string().as_bytes());
        assert_eq!(m.message_count, left, "message-count after get {i}");
        assert!(!m.delivery.redelivered);
    }
    assert!(
        ch.basic_get("got".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .is_none(),
        "get-empty"
    );
}

#[tokio::test]
async fn unacked_basic_get_returns_to_queue_when_channel_closes() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "get-ack", FieldTable::default()).await;
    fill(&ch, "get-ack", 1).await;
    let gch = conn.create_channel().await.unwrap();
    let m = gch
        .basic_get("get-ack".into(), BasicGetOptions { no_ack: false })
        .await
        .unwrap()
        .expect("get-ok");
    assert_eq!(m.delivery.data, b"0");
    assert_eq!(message_count(&ch, "get-ack").await, 0, "leased, not ready");
    gch.close(200, "OK".into()).await.unwrap();
    let again = get_within(&ch, "get-ack", WAIT).await.expect("requeued");
    assert!(again.delivery.redelivered);
}

// ----- ack / nack / reject -------------------------------------------------

#[tokio::test]
async fn ack_multiple_acknowledges_everything_up_to_the_tag() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "am", FieldTable::default()).await;
    fill(&ch, "am", 4).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, "am", "", false).await;
    let mut ds = Vec::new();
    for _ in 0..4 {
        ds.push(next(&mut consumer, WAIT).await.expect("delivery"));
    }
    cch.basic_ack(ds[2].delivery_tag, BasicAckOptions { multiple: true })
        .await
        .unwrap();
    // Closing the channel returns whatever is still unacknowledged.
    cch.close(200, "OK".into()).await.unwrap();
    assert_eq!(await_message_count(&ch, "am", 1, WAIT).await, 1);
    let left = get_within(&ch, "am", WAIT).await.expect("the unacked one");
    assert_eq!(left.delivery.data, b"3");
    assert!(left.delivery.redelivered);
}

#[tokio::test]
async fn nack_multiple_with_requeue_redelivers_in_order_flagged_redelivered() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "nm", FieldTable::default()).await;
    fill(&ch, "nm", 3).await;
    let mut consumer = consume(&ch, "nm", "", false).await;
    let mut last = None;
    for i in 0..3 {
        let d = next(&mut consumer, WAIT).await.expect("delivery");
        assert_eq!(d.data, i.to_string().as_bytes());
        assert!(!d.redelivered);
        last = Some(d);
    }
    ch.basic_nack(
        last.unwrap().delivery_tag,
        BasicNackOptions {
            multiple: true,
            requeue: true,
        },
    )
    .await
    .unwrap();
    for i in 0..3 {
        let d = next(&mut consumer, WAIT).await.expect("redelivery");
        assert_eq!(d.data, i.to_string().as_bytes(), "order after requeue");
        assert!(d.redelivered, "redelivered flag on {i}");
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
}

#[tokio::test]
async fn nack_and_reject_without_requeue_discard() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "discard", FieldTable::default()).await;
    fill(&ch, "discard", 2).await;
    let mut consumer = consume(&ch, "discard", "", false).await;
    let a = next(&mut consumer, WAIT).await.expect("a");
    let b = next(&mut consumer, WAIT).await.expect("b");
    a.nack(BasicNackOptions {
        requeue: false,
        ..Default::default()
    })
    .await
    .unwrap();
    b.reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();
    assert_quiet(&mut consumer, "discarded messages").await;
    assert_eq!(message_count(&ch, "discard").await, 0);
}

#[tokio::test]
async fn reject_with_requeue_puts_message_back_at_its_place() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "rj", FieldTable::default()).await;
    fill(&ch, "rj", 3).await;
    ch.basic_qos(2, BasicQosOptions::default()).await.unwrap();
    let mut consumer = consume(&ch, "rj", "", false).await;
    let first = next(&mut consumer, WAIT).await.expect("0");
    let second = next(&mut consumer, WAIT).await.expect("1");
    assert_eq!(second.data, b"1");
    second
        .reject(BasicRejectOptions { requeue: true })
        .await
        .unwrap();
    let again = next(&mut consumer, WAIT).await.expect("redelivery");
    assert_eq!(again.data, b"1", "requeued ahead of newer messages");
    assert!(again.redelivered);
    first.ack(BasicAckOptions::default()).await.unwrap();
    again.ack(BasicAckOptions::default()).await.unwrap();
    let last = next(&mut consumer, WAIT).await.expect("2");
    assert_eq!(last.data, b"2");
    assert!(!last.redelivered);
}

#[tokio::test]
async fn acking_an_unknown_delivery_tag_closes_the_channel_with_precondition_failed() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "tags", FieldTable::default()).await;
    fill(&ch, "tags", 1).await;
    let mut consumer = consume(&ch, "tags", "", false).await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    ch.basic_ack(d.delivery_tag + 100, BasicAckOptions::default())
        .await
        .unwrap();
    match next_result(&mut consumer, WAIT).await {
        Some(Err(e)) => assert_eq!(reply_code(&e), Some(406), "channel error: {e}"),
        other => panic!("expected the channel to close with 406, got {other:?}"),
    }
    assert!(!ch.status().connected());
    assert!(conn.status().connected(), "only the channel closes");
    // The unacknowledged delivery went back to the queue.
    let other = conn.create_channel().await.unwrap();
    let m = get_within(&other, "tags", WAIT).await.expect("released");
    assert!(m.delivery.redelivered);
}

#[tokio::test]
async fn acking_a_delivery_twice_closes_the_channel_with_precondition_failed() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "twice", FieldTable::default()).await;
    fill(&ch, "twice", 2).await;
    let mut consumer = consume(&ch, "twice", "", false).await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    ch.basic_ack(d.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    let mut code = None;
    while let Some(r) = next_result(&mut consumer, WAIT).await {
        if let Err(e) = r {
            code = reply_code(&e);
            break;
        }
    }
    assert_eq!(code, Some(406), "double ack is an unknown delivery tag");
}

#[tokio::test]
async fn recover_requeues_unacked_deliveries_as_redelivered() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "recovered", FieldTable::default()).await;
    fill(&ch, "recovered", 2).await;
    let mut consumer = consume(&ch, "recovered", "", false).await;
    for i in 0..2 {
        let d = next(&mut consumer, WAIT).await.expect("delivery");
        assert_eq!(d.data, i.to_string().as_bytes());
        assert!(!d.redelivered);
    }
    ch.basic_recover(BasicRecoverOptions { requeue: true })
        .await
        .expect("recover-ok");
    for i in 0..2 {
        let d = next(&mut consumer, WAIT).await.expect("redelivery");
        assert_eq!(d.data, i.to_string().as_bytes(), "order after recover");
        assert!(d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_quiet(&mut consumer, "after acking the recovered messages").await;
}

#[tokio::test]
async fn closing_a_channel_requeues_its_unacked_deliveries() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "released", FieldTable::default()).await;
    fill(&ch, "released", 3).await;
    let cch = conn.create_channel().await.unwrap();
    let mut consumer = consume(&cch, "released", "", false).await;
    take(&mut consumer, 3, false).await;
    assert_eq!(message_count(&ch, "released").await, 0);
    cch.close(200, "OK".into()).await.unwrap();
    assert_eq!(await_message_count(&ch, "released", 3, WAIT).await, 3);
    let mut again = consume(&ch, "released", "", true).await;
    assert_eq!(strings(take(&mut again, 3, false).await), ["0", "1", "2"]);
}

#[tokio::test]
async fn publishing_to_a_missing_exchange_closes_the_channel_with_not_found() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let r = match ch
        .basic_publish(
            "no-such-exchange".into(),
            "k".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    assert_eq!(expect_code(r, "publish to a missing exchange"), 404);
    assert!(conn.status().connected(), "only the channel closes");
}

/// RabbitMQ validates the user-id property: it must name the user the
/// connection logged in as, or the channel is closed with 406.
#[tokio::test]
async fn user_id_other_than_the_logged_in_user_is_precondition_failed() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let ch = conn.create_channel().await.unwrap();
    declare_queue(&ch, "validated", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let r = match ch
        .basic_publish(
            "".into(),
            "validated".into(),
            BasicPublishOptions::default(),
            b"forged",
            BasicProperties::default().with_user_id("mallory".into()),
        )
        .await
    {
        Ok(confirm) => confirm.await,
        Err(e) => Err(e),
    };
    assert_eq!(expect_code(r, "publish with a forged user-id"), 406);
    let other = conn.create_channel().await.unwrap();
    assert_eq!(message_count(&other, "validated").await, 0);
}
