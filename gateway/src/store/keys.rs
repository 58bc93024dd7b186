//! How keys are laid out.
//!
//! * Index and Body: `queue id (8 bytes, big-endian) ‖ seq (8 bytes,
//!   big-endian)`, so one queue's entries are contiguous and in order.
//! * Meta: one kind byte, then length-prefixed parts (`u16` big-endian length
//!   and bytes), so a key made of the first parts of another is its prefix
//!   and no name can be confused with another.

use super::Key;

/// A durable exchange: `[vhost, name]`.
pub const EXCHANGE: u8 = b'x';
/// A durable queue: `[vhost, name]`.
pub const QUEUE: u8 = b'q';
/// A durable binding: `[vhost, source, destination kind, destination, key, args hash]`.
pub const BINDING: u8 = b'b';
/// An MQTT session: `[client id]`.
pub const SESSION: u8 = b's';
/// An MQTT packet identifier in a QoS 2 exchange: `[client id, direction, packet id]`.
pub const PACKET: u8 = b'p';
/// A retained MQTT message: `[topic]`.
pub const RETAINED: u8 = b'r';
/// A FIFO deduplication record: `[queue id, scope, id]`.
pub const DEDUP: u8 = b'd';
/// A queue's reserved sequence numbers and lease tags: `[queue id]`.
pub const COUNTERS: u8 = b'c';
/// SQS-only facts about a queue: `[name]`.
pub const SQS_QUEUE: u8 = b'Q';
/// An SQS message move task: `[handle]`.
pub const MOVE_TASK: u8 = b'M';
/// An SNS topic: `[name]`.
pub const SNS_TOPIC: u8 = b'T';
/// An SNS subscription: `[arn]`.
pub const SNS_SUBSCRIPTION: u8 = b'S';
/// A user added, changed or deleted at runtime: `[name]`.
pub const USER: u8 = b'U';
/// The ACL as set at runtime: `[]`.
pub const ACL: u8 = b'A';
/// A topic rule added or changed at runtime: `[name]`.
pub const RULE: u8 = b'R';
/// Gateway identity (id prefixes, message id reservations): `[name]`.
pub const IDENTITY: u8 = b'I';
/// The start-up write probe.
pub const PROBE: u8 = b'!';

/// A meta key of `kind` with `parts`.
pub fn meta_key(kind: u8, parts: &[&[u8]]) -> Key {
    let mut k = Key::new();
    k.push(kind);
    for p in parts {
        let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
        k.extend_from_slice(&len.to_be_bytes());
        k.extend_from_slice(&p[..usize::from(len)]);
    }
    k
}

/// The parts of a meta key, or `None` if it is malformed.
pub fn meta_parts(key: &[u8]) -> Option<(u8, Vec<&[u8]>)> {
    let (&kind, mut rest) = key.split_first()?;
    let mut parts = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 2 {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let part = rest.get(2..2 + len)?;
        parts.push(part);
        rest = &rest[2 + len..];
    }
    Some((kind, parts))
}

/// The key of entry `seq` of queue `queue` (Index and Body).
pub fn entry_key(queue: u64, seq: u64) -> Key {
    let mut k = Key::new();
    k.extend_from_slice(&queue.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix of every entry of `queue`.
pub fn queue_prefix(queue: u64) -> Key {
    Key::from_slice(&queue.to_be_bytes())
}

/// `(queue, seq)` of an entry key.
pub fn parse_entry_key(key: &[u8]) -> Option<(u64, u64)> {
    let q = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let s = u64::from_be_bytes(key.get(8..16)?.try_into().ok()?);
    Some((q, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_keys_round_trip_and_nest() {
        let k = meta_key(BINDING, &[b"/", b"amq.topic", b"q", b"a.b"]);
        let (kind, parts) = meta_parts(&k).unwrap();
        assert_eq!(kind, BINDING);
        assert_eq!(parts, vec![&b"/"[..], b"amq.topic", b"q", b"a.b"]);
        let prefix = meta_key(BINDING, &[b"/", b"amq.topic"]);
        assert!(k.starts_with(&prefix));
        // "amq.t" is not a prefix part of "amq.topic".
        assert!(!k.starts_with(&meta_key(BINDING, &[b"/", b"amq.t"])));
    }

    #[test]
    fn entry_keys_sort_by_queue_then_seq() {
        let a = entry_key(1, 255);
        let b = entry_key(1, 256);
        let c = entry_key(2, 0);
        assert!(a < b && b < c);
        assert_eq!(parse_entry_key(&b), Some((1, 256)));
        assert!(b.starts_with(&queue_prefix(1)));
    }
}
