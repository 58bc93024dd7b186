//! Dead-lettering: what a message becomes when a queue gives up on it.
//!
//! The dead-lettered copy is republished to the queue's dead-letter exchange
//! with the `x-death` header RabbitMQ writes (so tools written for RabbitMQ read
//! it unchanged): an array of tables, newest first, one per (queue, reason),
//! each with `count`, `reason`, `queue`, `time`, `exchange`, `routing-keys` and
//! `original-expiration` when the message had one; plus `x-first-death-*` and
//! `x-last-death-*`. The expiration property is removed so the copy does not
//! expire again where it lands.

use std::sync::Arc;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};

use super::bytestr::ByteStr;
use super::exchange::swap_separators_into;
use super::message::{KeyForm, Message, MessageProperties, now_ms};
use super::props::encode_properties;

/// Why a message was dead-lettered (the `reason` in `x-death`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL passed.
    Expired,
    /// Dropped from the head of a full queue, or refused by `reject-publish-dlx`.
    MaxLen,
    /// Delivered more times than the queue's delivery limit.
    DeliveryLimit,
    /// Received as often as an SQS redrive policy allows (moved unchanged to
    /// the redrive queue, without `x-death`).
    MaxReceives,
}

impl DeathReason {
    /// The reason as RabbitMQ spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::MaxLen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
            DeathReason::MaxReceives => "maxReceiveCount",
        }
    }
}

/// Where a queue sends its dead letters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetterTarget {
    /// The dead-letter exchange (`""` is the default exchange).
    pub exchange: ByteStr,
    /// Replacement routing key; `None` keeps the message's own.
    pub routing_key: Option<ByteStr>,
}

/// The copy of `msg` to publish to `target` after `queue` gave up on it.
pub fn dead_lettered(
    msg: &Message,
    queue: &str,
    reason: DeathReason,
    target: &DeadLetterTarget,
) -> Arc<Message> {
    let original_key: String = match msg.key_form {
        KeyForm::Amqp => msg.routing_key.to_string(),
        KeyForm::Mqtt => {
            let mut key = String::new();
            swap_separators_into(&msg.routing_key, &mut key);
            key
        }
    };
    let mut props: BasicProperties = match msg.props.as_deref() {
        Some(p) => match &p.amqp {
            Some(a) => a.parsed.clone(),
            None => {
                let raw = p.amqp_raw(msg.persistent, None);
                amq_protocol::protocol::basic::parse_properties(&raw[..])
                    .map(|(_, parsed)| parsed)
                    .unwrap_or_default()
            }
        },
        None => BasicProperties::default(),
    };
    let mut headers = props.headers().clone().unwrap_or_default();
    let original_expiration = props.expiration().clone();
    let now = now_ms() / 1000;

    let mut deaths: Vec<AMQPValue> = match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    let matches = |t: &FieldTable| {
        matches!(t.inner().get("queue"), Some(AMQPValue::LongString(q)) if q.as_bytes() == queue.as_bytes())
            && matches!(t.inner().get("reason"), Some(AMQPValue::LongString(r)) if r.as_bytes() == reason.as_str().as_bytes())
    };
    let existing = deaths
        .iter()
        .position(|v| matches!(v, AMQPValue::FieldTable(t) if matches(t)));
    let entry = match existing.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(mut t)) => {
            let count = match t.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                Some(AMQPValue::LongInt(n)) => i64::from(*n),
                _ => 0,
            };
            t.insert("count".into(), AMQPValue::LongLongInt(count + 1));
            t.insert("time".into(), AMQPValue::Timestamp(now));
            t
        }
        _ => {
            let mut t = FieldTable::default();
            t.insert("count".into(), AMQPValue::LongLongInt(1));
            t.insert("reason".into(), long(reason.as_str()));
            t.insert("queue".into(), long(queue));
            t.insert("time".into(), AMQPValue::Timestamp(now));
            t.insert("exchange".into(), long(&msg.exchange));
            let keys: FieldArray = vec![long(&original_key)].into();
            t.insert("routing-keys".into(), AMQPValue::FieldArray(keys));
            if let Some(e) = &original_expiration {
                t.insert("original-expiration".into(), long(e.as_str()));
            }
            t
        }
    };
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert("x-death".into(), AMQPValue::FieldArray(deaths.into()));
    for (k, v) in [
        ("reason", reason.as_str()),
        ("queue", queue),
        ("exchange", msg.exchange.as_str()),
    ] {
        let first = ShortString::from(format!("x-first-death-{k}"));
        if !headers.contains_key(first.as_str()) {
            headers.insert(first, long(v));
        }
        headers.insert(ShortString::from(format!("x-last-death-{k}")), long(v));
    }
    // The copy keeps every property but the headers (updated) and the
    // expiration (dropped), as RabbitMQ does.
    props = rebuild_without_expiration(msg, BasicProperties::default().with_headers(headers));
    let raw = encode_properties(&props);

    let (routing_key, key_form) = match &target.routing_key {
        Some(k) => (k.clone(), KeyForm::Amqp),
        None => (ByteStr::from(original_key), KeyForm::Amqp),
    };
    Arc::new(Message {
        id: msg.id,
        routing_key,
        key_form,
        exchange: target.exchange.clone(),
        payload: msg.payload.clone(),
        qos: msg.qos.max(1),
        retain: false,
        persistent: msg.persistent,
        priority: msg.priority,
        published_at_ms: msg.published_at_ms,
        expires_at: None,
        origin: msg.origin,
        props: Some(Box::new(MessageProperties::from_amqp(raw, props))),
    })
}

/// Copies every property of the original except expiration onto `base`
/// (which already carries the new headers and delivery mode).
fn rebuild_without_expiration(msg: &Message, base: BasicProperties) -> BasicProperties {
    let Some(p) = msg.props.as_deref() else {
        return base;
    };
    let original = match &p.amqp {
        Some(a) => a.parsed.clone(),
        None => {
            let raw = p.amqp_raw(msg.persistent, None);
            amq_protocol::protocol::basic::parse_properties(&raw[..])
                .map(|(_, parsed)| parsed)
                .unwrap_or_default()
        }
    };
    let mut out = base;
    if let Some(v) = original.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = original.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = original.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = original.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = original.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = original.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = original.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = original.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = original.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = original.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = original.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = original.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

fn long(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn plain(key: &str) -> Message {
        Message {
            id: 1,
            routing_key: key.into(),
            key_form: KeyForm::Amqp,
            exchange: "orders".into(),
            payload: Bytes::from_static(b"x"),
            qos: 1,
            retain: false,
            persistent: true,
            priority: 0,
            published_at_ms: 0,
            expires_at: None,
            origin: 0,
            props: None,
        }
    }

    fn death(m: &Message) -> (FieldTable, Vec<FieldTable>) {
        let p = m
            .props
            .as_deref()
            .unwrap()
            .amqp
            .as_ref()
            .unwrap()
            .parsed
            .clone();
        let h = p.headers().clone().unwrap();
        let deaths = match h.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a
                .as_slice()
                .iter()
                .map(|v| match v {
                    AMQPValue::FieldTable(t) => t.clone(),
                    _ => panic!("x-death entry is not a table"),
                })
                .collect(),
            _ => panic!("no x-death"),
        };
        (h, deaths)
    }

    #[test]
    fn first_death_writes_x_death_like_rabbitmq() {
        let target = DeadLetterTarget {
            exchange: "dlx".into(),
            routing_key: None,
        };
        let d = dead_lettered(&plain("new.order"), "work", DeathReason::Rejected, &target);
        assert_eq!(d.exchange.as_str(), "dlx");
        assert_eq!(d.routing_key.as_str(), "new.order");
        let (h, deaths) = death(&d);
        assert_eq!(deaths.len(), 1);
        let t = deaths[0].inner();
        assert_eq!(t.get("count"), Some(&AMQPValue::LongLongInt(1)));
        assert_eq!(t.get("reason"), Some(&long("rejected")));
        assert_eq!(t.get("queue"), Some(&long("work")));
        assert_eq!(t.get("exchange"), Some(&long("orders")));
        assert_eq!(h.inner().get("x-first-death-queue"), Some(&long("work")));
    }

    #[test]
    fn repeated_death_in_same_queue_increments_count() {
        let target = DeadLetterTarget {
            exchange: "dlx".into(),
            routing_key: Some("retry".into()),
        };
        let once = dead_lettered(&plain("k"), "work", DeathReason::Rejected, &target);
        let twice = dead_lettered(&once, "work", DeathReason::Rejected, &target);
        let (_, deaths) = death(&twice);
        assert_eq!(deaths.len(), 1);
        assert_eq!(
            deaths[0].inner().get("count"),
            Some(&AMQPValue::LongLongInt(2))
        );
        assert_eq!(twice.routing_key.as_str(), "retry");
        let thrice = dead_lettered(&twice, "other", DeathReason::Expired, &target);
        let (h, deaths) = death(&thrice);
        assert_eq!(deaths.len(), 2);
        assert_eq!(deaths[0].inner().get("queue"), Some(&long("other")));
        assert_eq!(h.inner().get("x-first-death-queue"), Some(&long("work")));
        assert_eq!(h.inner().get("x-last-death-queue"), Some(&long("other")));
    }

    #[test]
    fn mqtt_topic_becomes_amqp_routing_key() {
        let mut m = plain("sensors/v1.2/temp");
        m.key_form = KeyForm::Mqtt;
        let target = DeadLetterTarget {
            exchange: "dlx".into(),
            routing_key: None,
        };
        let d = dead_lettered(&m, "q", DeathReason::DeliveryLimit, &target);
        assert_eq!(d.routing_key.as_str(), "sensors.v1/2.temp");
    }
}
