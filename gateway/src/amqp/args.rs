//! Declaration arguments (`x-message-ttl`, `x-dead-letter-exchange`, ...) in
//! RabbitMQ's spelling, turned into core queue options. A value of the wrong
//! type or range is a 406 PRECONDITION_FAILED naming the argument, as RabbitMQ
//! answers; unknown arguments are ignored, as RabbitMQ does.

use std::time::Duration;

use amq_protocol::types::{AMQPValue, FieldTable};

use super::frame::{AmqpError, code};
use crate::core::bytestr::ByteStr;
use crate::core::dead_letter::DeadLetterTarget;
use crate::core::queue::{Overflow, QueueOptions};

fn bad(arg: &str, why: &str) -> AmqpError {
    AmqpError::channel(
        code::PRECONDITION_FAILED,
        format!("PRECONDITION_FAILED - invalid arg '{arg}': {why}"),
    )
}

/// An integer argument of any AMQP integer type.
fn int(v: &AMQPValue) -> Option<i128> {
    Some(match v {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => (*n).into(),
        AMQPValue::Timestamp(n) => (*n).into(),
        _ => return None,
    })
}

/// A string argument (long or short string).
pub fn text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn non_negative(args: &FieldTable, name: &str) -> Result<Option<u64>, AmqpError> {
    match args.inner().get(name) {
        None => Ok(None),
        Some(v) => match int(v) {
            Some(n) if n >= 0 => Ok(Some(u64::try_from(n).unwrap_or(u64::MAX))),
            Some(_) => Err(bad(name, "must not be negative")),
            None => Err(bad(name, "must be an integer")),
        },
    }
}

fn string(args: &FieldTable, name: &str) -> Result<Option<String>, AmqpError> {
    match args.inner().get(name) {
        None => Ok(None),
        Some(v) => text(v)
            .map(Some)
            .ok_or_else(|| bad(name, "must be a string")),
    }
}

/// Core options for a queue declared with these flags and arguments.
pub fn queue_options(
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    args: &FieldTable,
) -> Result<QueueOptions, AmqpError> {
    let mut o = QueueOptions {
        durable,
        exclusive,
        auto_delete,
        ..Default::default()
    };
    o.message_ttl = non_negative(args, "x-message-ttl")?.map(Duration::from_millis);
    o.expires = match non_negative(args, "x-expires")? {
        Some(0) => return Err(bad("x-expires", "must be positive")),
        other => other.map(Duration::from_millis),
    };
    o.limits.max_messages =
        non_negative(args, "x-max-length")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    o.limits.max_bytes =
        non_negative(args, "x-max-length-bytes")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    o.limits.overflow = match string(args, "x-overflow")?.as_deref() {
        None | Some("drop-head") => Overflow::DropHead,
        Some("reject-publish") => Overflow::RejectPublish,
        Some("reject-publish-dlx") => Overflow::RejectPublishDlx,
        Some(other) => return Err(bad("x-overflow", &format!("unknown value '{other}'"))),
    };
    let dlx = string(args, "x-dead-letter-exchange")?;
    let dlrk = string(args, "x-dead-letter-routing-key")?;
    if dlrk.is_some() && dlx.is_none() {
        return Err(bad(
            "x-dead-letter-routing-key",
            "requires x-dead-letter-exchange",
        ));
    }
    o.dead_letter = dlx.map(|exchange| DeadLetterTarget {
        exchange: ByteStr::from(exchange),
        routing_key: dlrk.map(ByteStr::from),
    });
    o.max_priority = match non_negative(args, "x-max-priority")? {
        Some(n) if n > 255 => return Err(bad("x-max-priority", "must be at most 255")),
        other => other.map(|n| n as u8),
    };
    o.single_active_consumer = match args.inner().get("x-single-active-consumer") {
        None => false,
        Some(AMQPValue::Boolean(b)) => *b,
        Some(_) => return Err(bad("x-single-active-consumer", "must be a boolean")),
    };
    o.delivery_limit =
        non_negative(args, "x-delivery-limit")?.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    // SQS-style leases for AMQP consumers: an unacknowledged delivery returns
    // to the queue (redelivered) after this many milliseconds.
    o.settings.visibility_timeout = match non_negative(args, "x-visibility-timeout")? {
        Some(0) => return Err(bad("x-visibility-timeout", "must be positive")),
        other => other.map(Duration::from_millis),
    };
    match string(args, "x-queue-type")?.as_deref() {
        None | Some("classic") | Some("quorum") => {}
        Some("stream") => return Err(bad("x-queue-type", "stream queues are not supported")),
        Some(other) => {
            return Err(bad(
                "x-queue-type",
                &format!("unknown queue type '{other}'"),
            ));
        }
    }
    Ok(o)
}

/// The `alternate-exchange` argument of an exchange declaration.
pub fn alternate_exchange(args: &FieldTable) -> Result<Option<ByteStr>, AmqpError> {
    Ok(string(args, "alternate-exchange")?.map(ByteStr::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert((*k).into(), v.clone());
        }
        t
    }

    #[test]
    fn rabbitmq_arguments_become_queue_options() {
        let args = table(&[
            ("x-message-ttl", AMQPValue::LongInt(5000)),
            ("x-max-length", AMQPValue::LongLongInt(10)),
            (
                "x-overflow",
                AMQPValue::LongString(LongString::from("reject-publish-dlx")),
            ),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(LongString::from("dlx")),
            ),
            ("x-max-priority", AMQPValue::ShortShortUInt(10)),
            ("x-delivery-limit", AMQPValue::LongInt(3)),
            (
                "x-queue-type",
                AMQPValue::LongString(LongString::from("quorum")),
            ),
        ]);
        let o = queue_options(true, false, false, &args).unwrap();
        assert_eq!(o.message_ttl, Some(Duration::from_secs(5)));
        assert_eq!(o.limits.max_messages, Some(10));
        assert_eq!(o.limits.overflow, Overflow::RejectPublishDlx);
        assert_eq!(o.dead_letter.unwrap().exchange.as_str(), "dlx");
        assert_eq!(o.max_priority, Some(10));
        assert_eq!(o.delivery_limit, Some(3));
    }

    #[test]
    fn wrong_argument_type_is_precondition_failed() {
        let args = table(&[(
            "x-message-ttl",
            AMQPValue::LongString(LongString::from("soon")),
        )]);
        let e = queue_options(false, false, false, &args).unwrap_err();
        assert_eq!(e.code, code::PRECONDITION_FAILED);
        assert!(e.text.contains("x-message-ttl"));
    }

    #[test]
    fn visibility_timeout_argument_sets_lease_deadline() {
        let args = table(&[("x-visibility-timeout", AMQPValue::LongInt(1500))]);
        let o = queue_options(false, false, false, &args).unwrap();
        assert_eq!(
            o.settings.visibility_timeout,
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn stream_queues_are_refused() {
        let args = table(&[(
            "x-queue-type",
            AMQPValue::LongString(LongString::from("stream")),
        )]);
        assert_eq!(
            queue_options(true, false, false, &args).unwrap_err().code,
            code::PRECONDITION_FAILED
        );
    }
}
