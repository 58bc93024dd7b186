//! Message properties in one protocol-neutral shape, and their mapping to each
//! protocol's own.
//!
//! A message published over MQTT keeps its MQTT 5 properties (user properties
//! in wire form); one published over AMQP keeps its content-header properties
//! byte for byte, so AMQP consumers receive them intact. When a message crosses
//! protocols the other form is built once, on first delivery, and shared by
//! every later delivery:
//!
//! | MQTT 5 | AMQP 0-9-1 |
//! |---|---|
//! | Content Type | content-type |
//! | Correlation Data | correlation-id |
//! | Response Topic | reply-to |
//! | User Properties | headers (string values) |
//! | Message Expiry Interval | expiration (milliseconds) |
//! | QoS 1/2 | delivery-mode 2 |
//!
//! AMQP header values that are not strings become their decimal or textual
//! form in MQTT user properties; nested tables and arrays become JSON-like text.

use std::sync::OnceLock;

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{BufMut, Bytes, BytesMut};
use tether_protocols::mqtt::UserProperties;

use super::bytestr::ByteStr;

/// AMQP basic properties exactly as published: the wire bytes (property
/// flags and values) and their parsed form.
#[derive(Debug, Clone)]
pub struct AmqpProperties {
    /// Property flags and values as they appeared in the content header.
    pub raw: Bytes,
    /// The parsed properties.
    pub parsed: BasicProperties,
}

/// One SQS message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttribute {
    /// Attribute name.
    pub name: ByteStr,
    /// `String`, `Number` or `Binary`, optionally with a custom suffix (`String.uuid`).
    pub data_type: ByteStr,
    /// The value: text for String and Number types, bytes for Binary.
    pub value: AttributeValue,
}

/// The value of an SQS message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// StringValue (String and Number types).
    Text(ByteStr),
    /// BinaryValue.
    Binary(Bytes),
}

impl MessageAttribute {
    /// A `String` attribute.
    pub fn text(name: &str, value: &str) -> Self {
        MessageAttribute {
            name: name.into(),
            data_type: ByteStr::from_static("String"),
            value: AttributeValue::Text(value.into()),
        }
    }

    /// The value as text (Binary values lossily).
    pub fn value_text(&self) -> String {
        match &self.value {
            AttributeValue::Text(t) => t.to_string(),
            AttributeValue::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// Optional message properties.
#[derive(Debug, Default)]
pub struct MessageProperties {
    /// MIME type of the payload (MQTT Content Type).
    pub content_type: Option<ByteStr>,
    /// MQTT Payload Format Indicator: the payload is UTF-8 text.
    pub payload_is_utf8: bool,
    /// Where replies go (MQTT Response Topic).
    pub response_topic: Option<ByteStr>,
    /// Request/response correlation (MQTT Correlation Data).
    pub correlation_data: Option<Bytes>,
    /// MQTT user properties in wire form (only 0x26 entries), re-emitted
    /// verbatim on delivery so forwarding them costs no allocation.
    pub user_properties: Bytes,
    /// Set when the message was published over AMQP: its properties, verbatim.
    pub amqp: Option<AmqpProperties>,
    /// SQS message attributes as sent (SendMessage / SNS Publish).
    pub attributes: Vec<MessageAttribute>,
    /// SQS FIFO message group.
    pub group_id: Option<ByteStr>,
    /// SQS FIFO deduplication id.
    pub dedup_id: Option<ByteStr>,
    /// The queue this message was moved from by an SQS redrive policy.
    pub dead_letter_source: Option<ByteStr>,
    /// SNS Subject.
    pub subject: Option<ByteStr>,
    /// SQS AWSTraceHeader system attribute.
    pub trace_header: Option<ByteStr>,
    /// SNS MessageStructure `json`: the body holds one message per protocol.
    pub per_protocol: bool,
    mqtt_user_properties: OnceLock<Bytes>,
    amqp_raw: OnceLock<Bytes>,
}

impl Clone for MessageProperties {
    fn clone(&self) -> Self {
        MessageProperties {
            content_type: self.content_type.clone(),
            payload_is_utf8: self.payload_is_utf8,
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone(),
            user_properties: self.user_properties.clone(),
            amqp: self.amqp.clone(),
            attributes: self.attributes.clone(),
            group_id: self.group_id.clone(),
            dedup_id: self.dedup_id.clone(),
            dead_letter_source: self.dead_letter_source.clone(),
            subject: self.subject.clone(),
            trace_header: self.trace_header.clone(),
            per_protocol: self.per_protocol,
            mqtt_user_properties: OnceLock::new(),
            amqp_raw: OnceLock::new(),
        }
    }
}

impl MessageProperties {
    /// Properties of an AMQP publish.
    pub fn from_amqp(raw: Bytes, parsed: BasicProperties) -> Self {
        MessageProperties {
            amqp: Some(AmqpProperties { raw, parsed }),
            ..Default::default()
        }
    }

    /// Properties of an MQTT publish.
    pub fn from_mqtt(
        content_type: Option<ByteStr>,
        payload_is_utf8: bool,
        response_topic: Option<ByteStr>,
        correlation_data: Option<Bytes>,
        user_properties: Bytes,
    ) -> Self {
        MessageProperties {
            content_type,
            payload_is_utf8,
            response_topic,
            correlation_data,
            user_properties,
            ..Default::default()
        }
    }

    /// Properties of an SQS send or SNS publish.
    pub fn from_sqs(
        attributes: Vec<MessageAttribute>,
        group_id: Option<ByteStr>,
        dedup_id: Option<ByteStr>,
    ) -> Self {
        MessageProperties {
            attributes,
            group_id,
            dedup_id,
            ..Default::default()
        }
    }

    /// SQS message attributes: as sent over SQS/SNS, or derived from MQTT user
    /// properties or AMQP headers (as String attributes).
    pub fn sqs_attributes(&self) -> Vec<MessageAttribute> {
        if !self.attributes.is_empty() {
            return self.attributes.clone();
        }
        if let Some(h) = self.amqp_headers() {
            return h
                .inner()
                .iter()
                .filter(|(k, _)| !k.as_str().starts_with("x-"))
                .map(|(k, v)| MessageAttribute::text(k.as_str(), &value_text(v)))
                .collect();
        }
        UserProperties::Encoded(&self.user_properties)
            .iter()
            .map(|(k, v)| MessageAttribute::text(k, v))
            .collect()
    }

    /// Bytes counted against queue limits.
    pub fn size(&self) -> usize {
        self.user_properties.len()
            + self.correlation_data.as_ref().map_or(0, Bytes::len)
            + self.content_type.as_ref().map_or(0, |s| s.len())
            + self.response_topic.as_ref().map_or(0, |s| s.len())
            + self.amqp.as_ref().map_or(0, |a| a.raw.len())
    }

    /// The content type, from whichever protocol set it.
    pub fn content_type(&self) -> Option<&str> {
        match &self.amqp {
            Some(a) => a.parsed.content_type().as_ref().map(ShortString::as_str),
            None => self.content_type.as_deref(),
        }
    }

    /// Where replies go, as an MQTT topic: the Response Topic, or an AMQP
    /// reply-to routing key converted to topic form.
    pub fn response_topic_mqtt(&self) -> Option<std::borrow::Cow<'_, str>> {
        match &self.amqp {
            Some(a) => a.parsed.reply_to().as_ref().map(|r| {
                let mut topic = String::new();
                super::exchange::swap_separators_into(r.as_str(), &mut topic);
                std::borrow::Cow::Owned(topic)
            }),
            None => self
                .response_topic
                .as_deref()
                .map(std::borrow::Cow::Borrowed),
        }
    }

    /// Where replies go: MQTT Response Topic or AMQP reply-to, as sent.
    pub fn reply_to(&self) -> Option<&str> {
        match &self.amqp {
            Some(a) => a.parsed.reply_to().as_ref().map(ShortString::as_str),
            None => self.response_topic.as_deref(),
        }
    }

    /// Correlation data: MQTT Correlation Data or AMQP correlation-id.
    pub fn correlation(&self) -> Option<&[u8]> {
        match &self.amqp {
            Some(a) => a
                .parsed
                .correlation_id()
                .as_ref()
                .map(|s| s.as_str().as_bytes()),
            None => self.correlation_data.as_deref(),
        }
    }

    /// AMQP headers, if published over AMQP with headers.
    pub fn amqp_headers(&self) -> Option<&FieldTable> {
        self.amqp.as_ref().and_then(|a| a.parsed.headers().as_ref())
    }

    /// MQTT user properties in wire form; converted from AMQP headers or SQS
    /// attributes once.
    pub fn mqtt_user_properties(&self) -> &Bytes {
        if let Some(headers) = self.amqp_headers() {
            return self
                .mqtt_user_properties
                .get_or_init(|| headers_to_user_properties(headers));
        }
        if !self.attributes.is_empty() {
            return self.mqtt_user_properties.get_or_init(|| {
                let pairs: Vec<(String, String)> = self
                    .attributes
                    .iter()
                    .map(|a| (a.name.to_string(), a.value_text()))
                    .collect();
                encode_user_properties(&pairs)
            });
        }
        &self.user_properties
    }

    /// AMQP property bytes (flags and values) for delivery to AMQP consumers:
    /// verbatim for AMQP publishes, built once otherwise. `expiration_ms` and
    /// `persistent` describe the message; a message with an expiration gets
    /// fresh bytes each time (the remaining time changes).
    pub fn amqp_raw(&self, persistent: bool, expiration_ms: Option<u64>) -> Bytes {
        if let Some(a) = &self.amqp {
            return a.raw.clone();
        }
        if expiration_ms.is_some() {
            return encode_properties(&self.to_amqp(persistent, expiration_ms));
        }
        self.amqp_raw
            .get_or_init(|| encode_properties(&self.to_amqp(persistent, None)))
            .clone()
    }

    /// The AMQP properties of a message that was not published over AMQP.
    fn to_amqp(&self, persistent: bool, expiration_ms: Option<u64>) -> BasicProperties {
        let mut p = BasicProperties::default().with_delivery_mode(if persistent { 2 } else { 1 });
        if let Some(ct) = &self.content_type {
            p = p.with_content_type(ShortString::from(ct.as_str()));
        }
        if let Some(c) = &self.correlation_data {
            p = p.with_correlation_id(ShortString::from(String::from_utf8_lossy(c).into_owned()));
        }
        if let Some(r) = &self.response_topic {
            // An MQTT response topic is a reply-to routing key on amq.topic.
            let mut key = String::new();
            super::exchange::swap_separators_into(r, &mut key);
            p = p.with_reply_to(ShortString::from(key));
        }
        if let Some(ms) = expiration_ms {
            p = p.with_expiration(ShortString::from(ms.to_string()));
        }
        if !self.user_properties.is_empty() || !self.attributes.is_empty() {
            let mut headers = FieldTable::default();
            for (k, v) in UserProperties::Encoded(&self.user_properties).iter() {
                headers.insert(
                    ShortString::from(k),
                    AMQPValue::LongString(LongString::from(v)),
                );
            }
            for a in &self.attributes {
                let value = match &a.value {
                    AttributeValue::Text(t) => AMQPValue::LongString(LongString::from(t.as_str())),
                    AttributeValue::Binary(b) => AMQPValue::ByteArray(b.to_vec().into()),
                };
                headers.insert(ShortString::from(a.name.as_str()), value);
            }
            p = p.with_headers(headers);
        }
        p
    }
}

/// Properties of a plain message delivered to AMQP: none set, or delivery mode only.
pub fn plain_amqp_properties(persistent: bool, expiration_ms: Option<u64>) -> Bytes {
    let mut p = BasicProperties::default();
    if persistent {
        p = p.with_delivery_mode(2);
    }
    if let Some(ms) = expiration_ms {
        p = p.with_expiration(ShortString::from(ms.to_string()));
    }
    encode_properties(&p)
}

/// Encodes basic properties (flags and values) as they appear in a content header.
pub fn encode_properties(p: &BasicProperties) -> Bytes {
    match cookie_factory::r#gen(amq_protocol::protocol::basic::gen_properties(p), Vec::new()) {
        Ok((v, _)) => Bytes::from(v),
        // Generating into a Vec cannot run out of space; fall back to "no properties".
        Err(_) => Bytes::from_static(&[0, 0]),
    }
}

/// Converts AMQP headers into MQTT user-property wire bytes.
fn headers_to_user_properties(headers: &FieldTable) -> Bytes {
    let pairs: Vec<(String, String)> = headers
        .inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), value_text(v)))
        .collect();
    encode_user_properties(&pairs)
}

/// Encodes name/value pairs as MQTT user-property wire bytes.
fn encode_user_properties(pairs: &[(String, String)]) -> Bytes {
    let refs: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, v)| k.len() <= 65535 && v.len() <= 65535)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let up = UserProperties::Slice(&refs);
    let Ok(len) = up.encoded_len() else {
        return Bytes::new();
    };
    let mut buf = BytesMut::zeroed(len);
    match up.encode(&mut buf) {
        Ok(n) => {
            buf.truncate(n);
            buf.freeze()
        }
        Err(_) => Bytes::new(),
    }
}

/// Text form of an AMQP field value for an MQTT user property.
pub fn value_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::DecimalValue(d) => {
            let scale = 10f64.powi(i32::from(d.scale));
            (f64::from(d.value) / scale).to_string()
        }
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::Timestamp(t) => t.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Void => String::new(),
        AMQPValue::FieldArray(a) => {
            let items: Vec<String> = a.as_slice().iter().map(value_text).collect();
            format!("[{}]", items.join(","))
        }
        AMQPValue::FieldTable(t) => {
            let items: Vec<String> = t
                .inner()
                .iter()
                .map(|(k, v)| format!("{}:{}", k.as_str(), value_text(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
    }
}

/// Writes a content-header frame payload: class 60, weight 0, body size, properties.
pub fn put_content_header(buf: &mut BytesMut, body_size: u64, properties: &[u8]) {
    buf.put_u16(60);
    buf.put_u16(0);
    buf.put_u64(body_size);
    buf.put_slice(properties);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amqp_headers_become_user_properties() {
        let mut headers = FieldTable::default();
        headers.insert("site".into(), AMQPValue::LongString("north".into()));
        headers.insert("n".into(), AMQPValue::LongInt(7));
        let parsed = BasicProperties::default().with_headers(headers);
        let raw = encode_properties(&parsed);
        let props = MessageProperties::from_amqp(raw, parsed);
        let ups: Vec<(String, String)> = UserProperties::Encoded(props.mqtt_user_properties())
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        assert_eq!(
            ups,
            [
                ("n".to_owned(), "7".to_owned()),
                ("site".to_owned(), "north".to_owned())
            ]
        );
    }

    #[test]
    fn mqtt_properties_become_amqp_properties() {
        let up = UserProperties::Slice(&[("k", "v")]);
        let mut raw = vec![0u8; up.encoded_len().unwrap()];
        up.encode(&mut raw).unwrap();
        let props = MessageProperties {
            content_type: Some("application/json".into()),
            correlation_data: Some(Bytes::from_static(b"req-1")),
            response_topic: Some("replies/1".into()),
            user_properties: Bytes::from(raw),
            ..Default::default()
        };
        let bytes = props.amqp_raw(true, None);
        let (_, parsed) = amq_protocol::protocol::basic::parse_properties(&bytes[..]).unwrap();
        assert_eq!(
            parsed.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(parsed.correlation_id().as_ref().unwrap().as_str(), "req-1");
        // An MQTT response topic is a reply-to routing key in AMQP form.
        assert_eq!(parsed.reply_to().as_ref().unwrap().as_str(), "replies.1");
        assert_eq!(parsed.delivery_mode(), &Some(2));
        let h = parsed.headers().as_ref().unwrap();
        assert_eq!(h.inner().get("k"), Some(&AMQPValue::LongString("v".into())));
    }
}
