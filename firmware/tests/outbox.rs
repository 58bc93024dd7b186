//! The outbox on its own: order, capacity, overflow policies and counters.

use tether_firmware::outbox::{Outbox, OverflowPolicy, PushError, Pushed, SlotState};
use tether_firmware::protocols::mqtt::QoS;

const TOPIC: &str = "sensors/d1/telemetry";

fn payloads<const N: usize, const M: usize>(o: &Outbox<N, M>) -> Vec<String> {
    o.iter()
        .map(|m| String::from_utf8_lossy(m.payload).into_owned())
        .collect()
}

#[test]
fn messages_keep_their_order_topic_and_flags() {
    let mut o: Outbox<4, 64> = Outbox::default();
    o.push(TOPIC, b"a", QoS::AtLeastOnce, false).unwrap();
    o.push("sensors/d1/status", b"b", QoS::AtMostOnce, true)
        .unwrap();
    let all: Vec<_> = o.iter().collect();
    assert_eq!(all.len(), 2);
    assert_eq!(
        (all[0].topic, all[0].payload, all[0].qos),
        (TOPIC, &b"a"[..], QoS::AtLeastOnce)
    );
    assert_eq!(all[0].state, SlotState::Queued);
    assert_eq!((all[1].topic, all[1].retain), ("sensors/d1/status", true));
    assert_eq!(o.capacity(), 4);
    assert_eq!(o.slot_size(), 64);
}

#[test]
fn drop_oldest_is_the_default_and_keeps_the_newest() {
    let mut o: Outbox<3, 64> = Outbox::default();
    assert_eq!(o.policy(), OverflowPolicy::DropOldest);
    for i in 0..3 {
        assert_eq!(
            o.push(TOPIC, format!("r{i}").as_bytes(), QoS::AtMostOnce, false),
            Ok(Pushed::Queued)
        );
    }
    assert_eq!(
        o.push(TOPIC, b"r3", QoS::AtMostOnce, false),
        Ok(Pushed::QueuedDroppingOldest)
    );
    assert_eq!(
        o.push(TOPIC, b"r4", QoS::AtMostOnce, false),
        Ok(Pushed::QueuedDroppingOldest)
    );
    assert_eq!(payloads(&o), ["r2", "r3", "r4"]);
    let s = o.stats();
    assert_eq!((s.queued, s.dropped_oldest, s.dropped_newest), (5, 2, 0));
}

#[test]
fn drop_newest_keeps_the_oldest() {
    let mut o: Outbox<3, 64> = Outbox::new(OverflowPolicy::DropNewest);
    for i in 0..3 {
        o.push(TOPIC, format!("r{i}").as_bytes(), QoS::AtLeastOnce, false)
            .unwrap();
    }
    assert_eq!(
        o.push(TOPIC, b"r3", QoS::AtLeastOnce, false),
        Ok(Pushed::DroppedNewest)
    );
    assert_eq!(payloads(&o), ["r0", "r1", "r2"]);
    let s = o.stats();
    assert_eq!((s.queued, s.dropped_oldest, s.dropped_newest), (3, 0, 1));
}

#[test]
fn policy_can_change_at_run_time() {
    let mut o: Outbox<1, 64> = Outbox::default();
    o.push(TOPIC, b"a", QoS::AtMostOnce, false).unwrap();
    o.set_policy(OverflowPolicy::DropNewest);
    assert_eq!(
        o.push(TOPIC, b"b", QoS::AtMostOnce, false),
        Ok(Pushed::DroppedNewest)
    );
    assert_eq!(payloads(&o), ["a"]);
}

#[test]
fn message_larger_than_a_slot_is_refused_whatever_the_fill_level() {
    let mut o: Outbox<2, 24> = Outbox::default();
    // 20 bytes of topic + 4 of payload fit exactly.
    assert_eq!(
        o.push(TOPIC, b"1234", QoS::AtMostOnce, false),
        Ok(Pushed::Queued)
    );
    assert_eq!(
        o.push(TOPIC, b"12345", QoS::AtMostOnce, false),
        Err(PushError::TooLarge)
    );
    assert_eq!(o.stats().dropped_newest, 0, "a refusal is not an overflow");
}

#[test]
fn invalid_topics_and_qos2_are_refused() {
    let mut o: Outbox<2, 64> = Outbox::default();
    assert_eq!(
        o.push("", b"x", QoS::AtMostOnce, false),
        Err(PushError::InvalidTopic)
    );
    assert_eq!(
        o.push("sensors/+/telemetry", b"x", QoS::AtMostOnce, false),
        Err(PushError::InvalidTopic)
    );
    assert_eq!(
        o.push(TOPIC, b"x", QoS::ExactlyOnce, false),
        Err(PushError::UnsupportedQoS)
    );
    assert!(o.is_empty());
}

#[test]
fn zero_capacity_outbox_drops_everything_it_is_given() {
    let mut o: Outbox<0, 64> = Outbox::default();
    assert_eq!(
        o.push(TOPIC, b"x", QoS::AtMostOnce, false),
        Ok(Pushed::DroppedNewest)
    );
    assert_eq!(o.stats().dropped_newest, 1);
}

#[test]
fn wraps_around_its_ring_many_times() {
    let mut o: Outbox<3, 32> = Outbox::default();
    for i in 0..100 {
        o.push(TOPIC, format!("{i}").as_bytes(), QoS::AtMostOnce, false)
            .unwrap();
    }
    assert_eq!(payloads(&o), ["97", "98", "99"]);
    assert_eq!(o.stats().dropped_oldest, 97);
}
