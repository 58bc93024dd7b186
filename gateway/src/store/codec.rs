//! The binary form of what the hot path stores: messages (Body space) and queue
//! entries (Index space).
//!
//! Compact and versioned: integers are LEB128 varints, strings and byte
//! strings are length-prefixed, and every record starts with a format byte so
//! later versions can read older data. AMQP properties are stored as the wire
//! bytes the publisher sent (and parsed again on load), MQTT user properties
//! in their wire form, so nothing is lost in either direction. Declarations
//! (Meta space) are JSON instead: small, rare, and readable in a pinch.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use crate::core::bytestr::ByteStr;
use crate::core::message::{KeyForm, Message, now_ms};
use crate::core::props::{AmqpProperties, AttributeValue, MessageAttribute, MessageProperties};
use crate::core::queue::SubIds;

/// Format byte of message records.
const MESSAGE_V1: u8 = 1;
/// Format byte of entry records.
const ENTRY_V1: u8 = 1;

/// Why a record did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

/// Appends varints, strings and bytes.
#[derive(Debug, Default)]
pub struct Writer {
    buf: BytesMut,
}

impl Writer {
    /// A writer with room for `n` bytes.
    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: BytesMut::with_capacity(n),
        }
    }

    /// One byte.
    pub fn u8(&mut self, v: u8) {
        self.buf.put_u8(v);
    }

    /// A LEB128 varint.
    pub fn uvar(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.put_u8((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.put_u8(v as u8);
    }

    /// Length-prefixed bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.uvar(b.len() as u64);
        self.buf.put_slice(b);
    }

    /// An optional string: a presence byte, then the string.
    pub fn opt_str(&mut self, s: Option<&ByteStr>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.bytes(s.as_bytes());
            }
            None => self.u8(0),
        }
    }

    /// The encoded record.
    pub fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Reads what [`Writer`] wrote; strings and bytes share the record's buffer.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a Bytes) -> Self {
        Reader { buf, at: 0 }
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self
            .buf
            .get(self.at)
            .ok_or(DecodeError("record ends early"))?;
        self.at += 1;
        Ok(b)
    }

    /// A LEB128 varint.
    pub fn uvar(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    /// A varint that must fit in `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.uvar()?).map_err(|_| DecodeError("value out of range"))
    }

    /// Length-prefixed bytes (shared, not copied).
    pub fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = usize::try_from(self.uvar()?).map_err(|_| DecodeError("length too large"))?;
        let end = self
            .at
            .checked_add(len)
            .filter(|e| *e <= self.buf.len())
            .ok_or(DecodeError("length past the end"))?;
        let b = self.buf.slice(self.at..end);
        self.at = end;
        Ok(b)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<ByteStr, DecodeError> {
        let b = self.bytes()?;
        ByteStr::try_from(b).map_err(|_| DecodeError("string is not UTF-8"))
    }

    /// An optional string.
    pub fn opt_str(&mut self) -> Result<Option<ByteStr>, DecodeError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            _ => Err(DecodeError("bad presence byte")),
        }
    }

    /// Whether everything was read.
    pub fn is_at_end(&self) -> bool {
        self.at == self.buf.len()
    }
}

/// Milliseconds since the epoch for `t` (an `Instant` only means something
/// inside one process).
pub fn instant_to_ms(t: Instant) -> u64 {
    let now = Instant::now();
    let wall = now_ms();
    if t >= now {
        wall.saturating_add(u64::try_from((t - now).as_millis()).unwrap_or(u64::MAX))
    } else {
        wall.saturating_sub(u64::try_from((now - t).as_millis()).unwrap_or(u64::MAX))
    }
}

/// The `Instant` of a wall-clock time in milliseconds (past times map to now
/// or earlier).
pub fn ms_to_instant(ms: u64) -> Instant {
    let now = Instant::now();
    let wall = now_ms();
    if ms >= wall {
        now + Duration::from_millis(ms - wall)
    } else {
        now.checked_sub(Duration::from_millis(wall - ms))
            .unwrap_or(now)
    }
}

fn opt_ms(t: Option<Instant>) -> u64 {
    t.map_or(0, |t| instant_to_ms(t).max(1))
}

fn opt_instant(ms: u64) -> Option<Instant> {
    (ms != 0).then(|| ms_to_instant(ms))
}

/// The current time as 8 bytes (the start-up probe's value).
pub fn now_ms_bytes() -> [u8; 8] {
    now_ms().to_be_bytes()
}

const F_RETAIN: u8 = 1;
const F_PERSISTENT: u8 = 2;
const F_MQTT_KEY: u8 = 4;
const F_PROPS: u8 = 8;

/// Encodes a message (Body space).
pub fn encode_message(m: &Message) -> Bytes {
    let mut w = Writer::with_capacity(m.payload.len() + m.routing_key.len() + 48);
    w.u8(MESSAGE_V1);
    w.uvar(m.id);
    let mut flags = 0;
    if m.retain {
        flags |= F_RETAIN;
    }
    if m.persistent {
        flags |= F_PERSISTENT;
    }
    if m.key_form == KeyForm::Mqtt {
        flags |= F_MQTT_KEY;
    }
    if m.props.is_some() {
        flags |= F_PROPS;
    }
    w.u8(flags);
    w.u8(m.qos);
    w.u8(m.priority);
    w.bytes(m.routing_key.as_bytes());
    w.bytes(m.exchange.as_bytes());
    w.uvar(m.published_at_ms);
    w.uvar(opt_ms(m.expires_at));
    w.uvar(m.origin);
    if let Some(p) = &m.props {
        encode_props(&mut w, p);
    }
    w.bytes(&m.payload);
    w.finish()
}

fn encode_props(w: &mut Writer, p: &MessageProperties) {
    w.opt_str(p.content_type.as_ref());
    w.u8(u8::from(p.payload_is_utf8) | (u8::from(p.per_protocol) << 1));
    w.opt_str(p.response_topic.as_ref());
    match &p.correlation_data {
        Some(c) => {
            w.u8(1);
            w.bytes(c);
        }
        None => w.u8(0),
    }
    w.bytes(&p.user_properties);
    match &p.amqp {
        Some(a) => {
            w.u8(1);
            w.bytes(&a.raw);
        }
        None => w.u8(0),
    }
    w.uvar(p.attributes.len() as u64);
    for a in &p.attributes {
        w.bytes(a.name.as_bytes());
        w.bytes(a.data_type.as_bytes());
        match &a.value {
            AttributeValue::Text(t) => {
                w.u8(0);
                w.bytes(t.as_bytes());
            }
            AttributeValue::Binary(b) => {
                w.u8(1);
                w.bytes(b);
            }
        }
    }
    w.opt_str(p.group_id.as_ref());
    w.opt_str(p.dedup_id.as_ref());
    w.opt_str(p.dead_letter_source.as_ref());
    w.opt_str(p.subject.as_ref());
    w.opt_str(p.trace_header.as_ref());
}

/// Decodes a message written by [`encode_message`].
pub fn decode_message(buf: &Bytes) -> Result<Message, DecodeError> {
    let mut r = Reader::new(buf);
    if r.u8()? != MESSAGE_V1 {
        return Err(DecodeError("unknown message format"));
    }
    let id = r.uvar()?;
    let flags = r.u8()?;
    let qos = r.u8()?;
    let priority = r.u8()?;
    let routing_key = r.str()?;
    let exchange = r.str()?;
    let published_at_ms = r.uvar()?;
    let expires_at = opt_instant(r.uvar()?);
    let origin = r.uvar()?;
    let props = if flags & F_PROPS != 0 {
        Some(Box::new(decode_props(&mut r)?))
    } else {
        None
    };
    let payload = r.bytes()?;
    if !r.is_at_end() {
        return Err(DecodeError("trailing bytes after message"));
    }
    Ok(Message {
        id,
        routing_key,
        key_form: if flags & F_MQTT_KEY != 0 {
            KeyForm::Mqtt
        } else {
            KeyForm::Amqp
        },
        exchange,
        payload,
        qos,
        retain: flags & F_RETAIN != 0,
        persistent: flags & F_PERSISTENT != 0,
        priority,
        published_at_ms,
        expires_at,
        origin,
        props,
    })
}

fn decode_props(r: &mut Reader<'_>) -> Result<MessageProperties, DecodeError> {
    let content_type = r.opt_str()?;
    let bits = r.u8()?;
    let response_topic = r.opt_str()?;
    let correlation_data = match r.u8()? {
        0 => None,
        _ => Some(r.bytes()?),
    };
    let user_properties = r.bytes()?;
    let amqp = match r.u8()? {
        0 => None,
        _ => {
            let raw = r.bytes()?;
            let parsed = match amq_protocol::protocol::basic::parse_properties(&raw[..]) {
                Ok(([], p)) => p,
                _ => return Err(DecodeError("stored AMQP properties do not parse")),
            };
            Some(AmqpProperties { raw, parsed })
        }
    };
    let n = r.uvar()?;
    let mut attributes = Vec::with_capacity(usize::try_from(n.min(64)).unwrap_or(0));
    for _ in 0..n {
        let name = r.str()?;
        let data_type = r.str()?;
        let value = match r.u8()? {
            0 => AttributeValue::Text(r.str()?),
            _ => AttributeValue::Binary(r.bytes()?),
        };
        attributes.push(MessageAttribute {
            name,
            data_type,
            value,
        });
    }
    let mut p = MessageProperties::from_mqtt(
        content_type,
        bits & 1 != 0,
        response_topic,
        correlation_data,
        user_properties,
    );
    p.per_protocol = bits & 2 != 0;
    p.amqp = amqp;
    p.attributes = attributes;
    p.group_id = r.opt_str()?;
    p.dedup_id = r.opt_str()?;
    p.dead_letter_source = r.opt_str()?;
    p.subject = r.opt_str()?;
    p.trace_header = r.opt_str()?;
    Ok(p)
}

/// A queue entry as stored (Index space): everything the queue keeps about
/// one message besides the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryRecord {
    /// The message's id.
    pub msg_id: u64,
    /// Bytes it counts for in limits.
    pub size: u32,
    /// Length of its body.
    pub body_len: u32,
    /// Priority level within the queue.
    pub level: u8,
    /// Delivery QoS (MQTT).
    pub qos: u8,
    /// MQTT retain-as-published.
    pub retain_as_published: bool,
    /// MQTT subscription identifiers.
    pub sub_ids: SubIds,
    /// Deliveries so far.
    pub deliveries: u32,
    /// First delivery, ms since the epoch (0: never).
    pub first_delivery_ms: u64,
    /// Expiry (dead-lettered), ms since the epoch (0: never).
    pub expires_at_ms: u64,
    /// Retention end (deleted), ms since the epoch (0: never).
    pub drop_at_ms: u64,
    /// Delay end, ms since the epoch (0: visible).
    pub visible_at_ms: u64,
    /// Receipt lease tag (SQS), 0 for none.
    pub lease_tag: u64,
    /// When that lease ends, ms since the epoch.
    pub lease_deadline_ms: u64,
}

impl EntryRecord {
    /// Encodes the record.
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::with_capacity(48);
        w.u8(ENTRY_V1);
        w.uvar(self.msg_id);
        w.uvar(u64::from(self.size));
        w.uvar(u64::from(self.body_len));
        w.u8(self.level);
        w.u8(self.qos | (u8::from(self.retain_as_published) << 4));
        w.uvar(self.sub_ids.len() as u64);
        for id in &self.sub_ids {
            w.uvar(u64::from(*id));
        }
        w.uvar(u64::from(self.deliveries));
        w.uvar(self.first_delivery_ms);
        w.uvar(self.expires_at_ms);
        w.uvar(self.drop_at_ms);
        w.uvar(self.visible_at_ms);
        w.uvar(self.lease_tag);
        w.uvar(self.lease_deadline_ms);
        w.finish()
    }

    /// Decodes a record written by [`EntryRecord::encode`].
    pub fn decode(buf: &Bytes) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf);
        if r.u8()? != ENTRY_V1 {
            return Err(DecodeError("unknown entry format"));
        }
        let msg_id = r.uvar()?;
        let size = r.u32()?;
        let body_len = r.u32()?;
        let level = r.u8()?;
        let q = r.u8()?;
        let n = r.uvar()?;
        let mut sub_ids = SubIds::new();
        for _ in 0..n.min(1024) {
            sub_ids.push(r.u32()?);
        }
        let rec = EntryRecord {
            msg_id,
            size,
            body_len,
            level,
            qos: q & 0x0f,
            retain_as_published: q & 0x10 != 0,
            sub_ids,
            deliveries: r.u32()?,
            first_delivery_ms: r.uvar()?,
            expires_at_ms: r.uvar()?,
            drop_at_ms: r.uvar()?,
            visible_at_ms: r.uvar()?,
            lease_tag: r.uvar()?,
            lease_deadline_ms: r.uvar()?,
        };
        if !r.is_at_end() {
            return Err(DecodeError("trailing bytes after entry"));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::protocol::BasicProperties;
    use amq_protocol::types::{AMQPValue, FieldTable, ShortString};

    fn plain() -> Message {
        Message {
            id: 42,
            routing_key: ByteStr::from("sensors/1/temp"),
            key_form: KeyForm::Mqtt,
            exchange: ByteStr::from("amq.topic"),
            payload: Bytes::from_static(b"21.5"),
            qos: 1,
            retain: true,
            persistent: true,
            priority: 3,
            published_at_ms: 1_700_000_000_000,
            expires_at: None,
            origin: 7,
            props: None,
        }
    }

    #[test]
    fn plain_message_round_trips() {
        let m = plain();
        let d = decode_message(&encode_message(&m)).unwrap();
        assert_eq!(d.id, 42);
        assert_eq!(d.routing_key.as_str(), "sensors/1/temp");
        assert_eq!(d.key_form, KeyForm::Mqtt);
        assert_eq!(d.exchange.as_str(), "amq.topic");
        assert_eq!(&d.payload[..], b"21.5");
        assert_eq!(
            (d.qos, d.retain, d.persistent, d.priority),
            (1, true, true, 3)
        );
        assert_eq!(d.published_at_ms, 1_700_000_000_000);
        assert!(d.expires_at.is_none() && d.props.is_none());
    }

    #[test]
    fn properties_of_every_protocol_round_trip() {
        let mut m = plain();
        m.key_form = KeyForm::Amqp;
        m.expires_at = Some(Instant::now() + Duration::from_secs(60));
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from("h"), AMQPValue::LongInt(5));
        let amqp = BasicProperties::default()
            .with_content_type(ShortString::from("text/plain"))
            .with_headers(headers)
            .with_delivery_mode(2);
        let mut raw = Vec::new();
        let (raw, _) = cookie_factory::r#gen(
            amq_protocol::protocol::basic::gen_properties(&amqp),
            std::mem::take(&mut raw),
        )
        .unwrap();
        let mut p = MessageProperties::from_mqtt(
            Some("application/json".into()),
            true,
            Some("reply/here".into()),
            Some(Bytes::from_static(b"corr")),
            Bytes::from_static(&[0x26, 0, 1, b'k', 0, 1, b'v']),
        );
        p.amqp = Some(AmqpProperties {
            raw: Bytes::from(raw),
            parsed: amqp.clone(),
        });
        p.attributes = vec![
            MessageAttribute::text("color", "red"),
            MessageAttribute {
                name: "blob".into(),
                data_type: "Binary".into(),
                value: AttributeValue::Binary(Bytes::from_static(&[0, 1, 2])),
            },
        ];
        p.group_id = Some("g1".into());
        p.dedup_id = Some("d1".into());
        p.dead_letter_source = Some("src".into());
        p.subject = Some("subj".into());
        p.trace_header = Some("Root=1".into());
        p.per_protocol = true;
        m.props = Some(Box::new(p));
        let d = decode_message(&encode_message(&m)).unwrap();
        let left = d
            .expires_at
            .unwrap()
            .saturating_duration_since(Instant::now());
        assert!(left > Duration::from_secs(58) && left <= Duration::from_secs(61));
        let p = d.props.unwrap();
        assert_eq!(p.content_type.as_deref(), Some("application/json"));
        assert!(p.payload_is_utf8 && p.per_protocol);
        assert_eq!(p.response_topic.as_deref(), Some("reply/here"));
        assert_eq!(p.correlation_data.as_deref(), Some(&b"corr"[..]));
        assert_eq!(&p.user_properties[..], &[0x26, 0, 1, b'k', 0, 1, b'v']);
        assert_eq!(p.amqp.as_ref().unwrap().parsed, amqp);
        assert_eq!(p.attributes.len(), 2);
        assert_eq!(
            p.attributes[1].value,
            AttributeValue::Binary(Bytes::from_static(&[0, 1, 2]))
        );
        assert_eq!(p.group_id.as_deref(), Some("g1"));
        assert_eq!(p.dedup_id.as_deref(), Some("d1"));
        assert_eq!(p.dead_letter_source.as_deref(), Some("src"));
        assert_eq!(p.subject.as_deref(), Some("subj"));
        assert_eq!(p.trace_header.as_deref(), Some("Root=1"));
    }

    #[test]
    fn truncated_or_garbled_records_are_errors_not_panics() {
        let enc = encode_message(&plain());
        for cut in 0..enc.len() {
            assert!(decode_message(&enc.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = BytesMut::from(&enc[..]);
        bad[0] = 99;
        assert!(decode_message(&bad.freeze()).is_err());
        let rec = EntryRecord {
            msg_id: 1,
            sub_ids: SubIds::from_slice(&[3, 4]),
            deliveries: 2,
            lease_tag: 9,
            lease_deadline_ms: 5,
            ..Default::default()
        };
        let e = rec.encode();
        assert_eq!(EntryRecord::decode(&e).unwrap(), rec);
        for cut in 0..e.len() {
            assert!(EntryRecord::decode(&e.slice(..cut)).is_err());
        }
    }
}
