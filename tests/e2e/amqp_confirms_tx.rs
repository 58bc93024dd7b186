//! Publisher confirms and transactions through lapin: confirm.select, acks
//! (lapin folds multiple-acks into per-message confirms), nacks from a full
//! `reject-publish` queue, and tx.select / commit / rollback for publishes
//! and acknowledgements. RabbitMQ's behaviour is the reference.

use tether_e2e::Gateway;
use tether_e2e::amqp::*;

async fn publish_confirmed(ch: &Channel, queue: &str, body: &[u8]) -> lapin::PublisherConfirm {
    ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
}

#[tokio::test]
async fn confirm_select_makes_every_publish_acked() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(&ch, "confirmed", FieldTable::default()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm.select-ok");
    assert!(ch.status().confirm());
    // Publish a burst without waiting, so the gateway may confirm several at once.
    let mut pending = Vec::new();
    for i in 0..200u32 {
        pending.push(publish_confirmed(&ch, "confirmed", &i.to_be_bytes()).await);
    }
    for (i, p) in pending.into_iter().enumerate() {
        let c = tokio::time::timeout(WAIT, p)
            .await
            .unwrap_or_else(|_| panic!("confirm {i} in time"))
            .expect("confirm");
        assert_eq!(c, lapin::Confirmation::Ack(None), "message {i}");
    }
    assert!(ch.wait_for_confirms().await.unwrap().is_empty());
    assert_eq!(message_count(&ch, "confirmed").await, 200);
}

#[tokio::test]
async fn full_reject_publish_queue_nacks_exactly_the_refused_messages() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    declare_queue(
        &ch,
        "two-only",
        table(&[
            ("x-max-length", AMQPValue::LongInt(2)),
            ("x-overflow", long_str("reject-publish")),
        ]),
    )
    .await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..4u8 {
        pending.push(publish_confirmed(&ch, "two-only", &[i]).await);
    }
    let mut outcome = Vec::new();
    for p in pending {
        let c = tokio::time::timeout(WAIT, p)
            .await
            .expect("confirm in time")
            .expect("confirm");
        outcome.push(c.is_ack());
    }
    assert_eq!(outcome, [true, true, false, false]);
    // A later message that fits again is acked after the nacks.
    ch.queue_purge("two-only".into(), QueuePurgeOptions::default())
        .await
        .unwrap();
    let c = publish_confirmed(&ch, "two-only", b"fits")
        .await
        .await
        .unwrap();
    assert!(c.is_ack());
}

#[tokio::test]
async fn confirm_select_on_a_transactional_channel_is_refused() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.tx_select().await.expect("tx.select-ok");
    let r = ch.confirm_select(ConfirmSelectOptions::default()).await;
    assert_eq!(expect_code(r, "confirm.select after tx.select"), 406);
}

#[tokio::test]
async fn tx_select_on_a_confirm_channel_is_refused() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let r = ch.tx_select().await;
    assert_eq!(expect_code(r, "tx.select after confirm.select"), 406);
}

#[tokio::test]
async fn tx_commit_without_tx_select_is_precondition_failed() {
    let gw = Gateway::start();
    let (_c, ch) = channel(gw.amqp.unwrap()).await;
    assert_eq!(
        expect_code(ch.tx_commit().await, "tx.commit outside a transaction"),
        406
    );
}

#[tokio::test]
async fn transactional_publishes_are_invisible_until_commit() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let watch = conn.create_channel().await.unwrap();
    declare_queue(&watch, "tx-q", FieldTable::default()).await;
    let mut consumer = consume(&watch, "tx-q", "", true).await;
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.expect("tx.select-ok");
    publish(&ch, "", "tx-q", b"one").await;
    publish(&ch, "", "tx-q", b"two").await;
    assert_quiet(&mut consumer, "uncommitted publishes").await;
    assert_eq!(message_count(&watch, "tx-q").await, 0);
    ch.tx_commit().await.expect("tx.commit-ok");
    assert_eq!(take(&mut consumer, 2, false).await, [b"one", b"two"]);
    // The channel stays transactional: the next publish waits for the next commit.
    publish(&ch, "", "tx-q", b"three").await;
    assert_quiet(&mut consumer, "publish of the second transaction").await;
    ch.tx_commit().await.unwrap();
    assert_eq!(take(&mut consumer, 1, false).await, [b"three"]);
}

#[tokio::test]
async fn transactional_publishes_are_discarded_on_rollback() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let watch = conn.create_channel().await.unwrap();
    declare_queue(&watch, "tx-rb", FieldTable::default()).await;
    let mut consumer = consume(&watch, "tx-rb", "", true).await;
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    publish(&ch, "", "tx-rb", b"discarded").await;
    ch.tx_rollback().await.expect("tx.rollback-ok");
    publish(&ch, "", "tx-rb", b"kept").await;
    ch.tx_commit().await.unwrap();
    assert_eq!(take(&mut consumer, 1, false).await, [b"kept"]);
    assert_quiet(&mut consumer, "the rolled-back publish").await;
}

#[tokio::test]
async fn transactional_acks_take_effect_on_commit() {
    let gw = Gateway::start();
    let conn = connect(gw.amqp.unwrap()).await;
    let watch = conn.create_channel().await.unwrap();
    declare_queue(&watch, "tx-ack", FieldTable::default()).await;
    publish(&watch, "", "tx-ack", b"job").await;
    assert_eq!(await_message_count(&watch, "tx-ack", 1, WAIT).await, 1);

    // Acked inside a transaction that never commits: the ack is void, and
    // closing the channel returns the message.
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    let mut consumer = consume(&ch, "tx-ack", "", false).await;
    let d = next(&mut consumer, WAIT).await.expect("delivery");
    d.ack(BasicAckOptions::default()).await.unwrap();
    ch.tx_rollback().await.unwrap();
    ch.close(200, "OK".into()).await.unwrap();
    assert_eq!(
        await_message_count(&watch, "tx-ack", 1, WAIT).await,
        1,
        "a rolled-back ack must not remove the message"
    );

    // Acked and committed: gone for good.
    let ch = conn.create_channel().await.unwrap();
    ch.tx_select().await.unwrap();
    let mut consumer = consume(&ch, "tx-ack", "", false).await;
    let d = next(&mut consumer, WAIT).await.expect("redelivery");
    assert!(d.redelivered);
    d.ack(BasicAckOptions::default()).await.unwrap();
    ch.tx_commit().await.expect("commit");
    ch.close(200, "OK".into()).await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(message_count(&watch, "tx-ack").await, 0);
}
