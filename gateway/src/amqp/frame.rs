//! AMQP 0-9-1 framing: splitting the byte stream into frames, parsing method
//! and content-header payloads with amq-protocol, and writing frames.
//!
//! Frames are split here rather than by amq-protocol so that content bodies
//! stay zero-copy slices of the read buffer. Method frames are parsed and
//! generated with amq-protocol (the codec lapin is built on), except for the
//! few sent once per message (deliver, get-ok, return, confirms), which are
//! written directly into the connection's buffer without allocating.

use amq_protocol::frame::{AMQPFrame, gen_frame};
use amq_protocol::protocol::{AMQPClass, basic::AMQPProperties};
use bytes::{BufMut, Bytes, BytesMut};

/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// The 0-9-1 protocol header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// Reply codes (AMQP 0-9-1 §1.9 and RabbitMQ's usage).
pub mod code {
    /// Normal close.
    pub const REPLY_SUCCESS: u16 = 200;
    /// basic.return: no queue was bound for a mandatory message.
    pub const NO_ROUTE: u16 = 312;
    /// The server is closing the connection (shutdown, takeover).
    pub const CONNECTION_FORCED: u16 = 320;
    /// Access refused (auth, reserved names, exclusive consumers, internal exchanges).
    pub const ACCESS_REFUSED: u16 = 403;
    /// Missing entity.
    pub const NOT_FOUND: u16 = 404;
    /// Exclusive queue of another connection.
    pub const RESOURCE_LOCKED: u16 = 405;
    /// Precondition failed (inequivalent declare, unknown delivery tag, ...).
    pub const PRECONDITION_FAILED: u16 = 406;
    /// Malformed frame.
    pub const FRAME_ERROR: u16 = 501;
    /// Method fields that do not parse.
    pub const SYNTAX_ERROR: u16 = 502;
    /// A method not valid in this state.
    pub const COMMAND_INVALID: u16 = 503;
    /// Channel misuse (unopened channel, out of range, reopened).
    pub const CHANNEL_ERROR: u16 = 504;
    /// A frame arriving where another was expected.
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// The server ran out of a resource.
    pub const RESOURCE_ERROR: u16 = 506;
    /// Not allowed (e.g. unknown vhost, duplicate consumer tag).
    pub const NOT_ALLOWED: u16 = 530;
    /// Unknown class or method, or an unsupported option.
    pub const NOT_IMPLEMENTED: u16 = 540;
    /// Server bug.
    pub const INTERNAL_ERROR: u16 = 541;
}

/// Whether an error closes the channel or the whole connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Channel exception: channel.close; the connection stays.
    Channel,
    /// Connection exception: connection.close.
    Connection,
}

/// An AMQP exception to raise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    /// Reply code.
    pub code: u16,
    /// Reply text.
    pub text: String,
    /// Class of the method that failed (0 if none).
    pub class_id: u16,
    /// The method that failed (0 if none).
    pub method_id: u16,
    /// Channel or connection exception.
    pub scope: Scope,
}

impl AmqpError {
    /// A channel exception.
    pub fn channel(code: u16, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
            scope: Scope::Channel,
        }
    }

    /// A connection exception.
    pub fn connection(code: u16, text: impl Into<String>) -> Self {
        AmqpError {
            code,
            text: text.into(),
            class_id: 0,
            method_id: 0,
            scope: Scope::Connection,
        }
    }

    /// Records the method the error is about.
    pub fn at(mut self, class_id: u16, method_id: u16) -> Self {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }
}

/// One frame cut from the stream.
#[derive(Debug)]
pub struct RawFrame {
    /// Frame type octet.
    pub kind: u8,
    /// Channel number.
    pub channel: u16,
    /// The payload (between the header and the frame-end octet).
    pub payload: Bytes,
}

/// Cuts the next whole frame off `buf`. `Ok(None)` when more bytes are needed
/// (and `buf` has room reserved for them).
pub fn next_frame(buf: &mut BytesMut, frame_max: usize) -> Result<Option<RawFrame>, AmqpError> {
    if buf.len() < 7 {
        return Ok(None);
    }
    let kind = buf[0];
    let channel = u16::from_be_bytes([buf[1], buf[2]]);
    let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]) as usize;
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(AmqpError::connection(
            code::FRAME_ERROR,
            format!("unknown frame type {kind}"),
        ));
    }
    if size + 8 > frame_max {
        return Err(AmqpError::connection(
            code::FRAME_ERROR,
            format!("frame size {} exceeds frame_max {frame_max}", size + 8),
        ));
    }
    if buf.len() < size + 8 {
        buf.reserve(size + 8 - buf.len());
        return Ok(None);
    }
    let frame = buf.split_to(size + 8).freeze();
    if frame[size + 7] != FRAME_END {
        return Err(AmqpError::connection(
            code::FRAME_ERROR,
            format!("frame end octet 0x{:02X} instead of 0xCE", frame[size + 7]),
        ));
    }
    Ok(Some(RawFrame {
        kind,
        channel,
        payload: frame.slice(7..7 + size),
    }))
}

/// Classes and methods of AMQP 0-9-1 (with RabbitMQ's extensions) that we know.
fn known_method(class: u16, method: u16) -> bool {
    match class {
        10 => matches!(
            method,
            10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51 | 60 | 61 | 70 | 71
        ),
        20 => matches!(method, 10 | 11 | 20 | 21 | 40 | 41),
        30 => matches!(method, 10 | 11),
        40 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 51),
        50 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31 | 40 | 41 | 50 | 51),
        60 => matches!(
            method,
            10 | 11
                | 20
                | 21
                | 30
                | 31
                | 40
                | 50
                | 60
                | 70
                | 71
                | 72
                | 80
                | 90
                | 100
                | 110
                | 111
                | 120
        ),
        85 => matches!(method, 10 | 11),
        90 => matches!(method, 10 | 11 | 20 | 21 | 30 | 31),
        _ => false,
    }
}

/// Parses a method frame's payload.
pub fn parse_method(payload: &[u8]) -> Result<AMQPClass, AmqpError> {
    if payload.len() < 4 {
        return Err(AmqpError::connection(
            code::FRAME_ERROR,
            "method frame shorter than 4 bytes",
        ));
    }
    let class = u16::from_be_bytes([payload[0], payload[1]]);
    let method = u16::from_be_bytes([payload[2], payload[3]]);
    if !known_method(class, method) {
        return Err(AmqpError::connection(
            code::NOT_IMPLEMENTED,
            format!("unknown method {method} of class {class}"),
        )
        .at(class, method));
    }
    match amq_protocol::protocol::parse_class(payload) {
        Ok(([], parsed)) => Ok(parsed),
        Ok(_) => Err(AmqpError::connection(
            code::SYNTAX_ERROR,
            "trailing bytes after method fields",
        )
        .at(class, method)),
        Err(_) => Err(
            AmqpError::connection(code::SYNTAX_ERROR, "method fields do not parse")
                .at(class, method),
        ),
    }
}

/// A parsed content header.
#[derive(Debug)]
pub struct ContentHeader {
    /// Content class (60 for basic).
    pub class_id: u16,
    /// Total body size announced.
    pub body_size: u64,
    /// The property bytes exactly as sent (flags and values).
    pub raw_properties: Bytes,
    /// The parsed properties.
    pub properties: AMQPProperties,
}

/// Parses a content-header frame's payload.
pub fn parse_header(payload: &Bytes) -> Result<ContentHeader, AmqpError> {
    if payload.len() < 14 {
        return Err(AmqpError::connection(
            code::FRAME_ERROR,
            "content header shorter than 14 bytes",
        ));
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let body_size = u64::from_be_bytes(payload[4..12].try_into().unwrap_or([0; 8]));
    let raw = payload.slice(12..);
    let properties = match amq_protocol::protocol::basic::parse_properties(&raw[..]) {
        Ok(([], p)) => p,
        _ => {
            return Err(AmqpError::connection(
                code::FRAME_ERROR,
                "content header properties do not parse",
            ));
        }
    };
    Ok(ContentHeader {
        class_id,
        body_size,
        raw_properties: raw,
        properties,
    })
}

/// Appends a method frame generated by amq-protocol.
pub fn put_method(buf: &mut BytesMut, scratch: &mut Vec<u8>, channel: u16, method: AMQPClass) {
    let frame = AMQPFrame::Method(channel, method);
    let out = std::mem::take(scratch);
    match cookie_factory::r#gen(gen_frame(&frame), out) {
        Ok((mut v, _)) => {
            buf.extend_from_slice(&v);
            v.clear();
            *scratch = v;
        }
        Err(e) => tracing::error!(error = ?e, "cannot encode AMQP method frame"),
    }
}

/// Starts a frame; returns where its size field is, for [`end_frame`].
pub fn begin_frame(buf: &mut BytesMut, kind: u8, channel: u16) -> usize {
    buf.put_u8(kind);
    buf.put_u16(channel);
    let at = buf.len();
    buf.put_u32(0);
    at
}

/// Finishes a frame begun with [`begin_frame`]: writes its size and end octet.
pub fn end_frame(buf: &mut BytesMut, size_at: usize) {
    let size = (buf.len() - size_at - 4) as u32;
    buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

fn put_short_str(buf: &mut BytesMut, s: &[u8]) {
    let s = &s[..s.len().min(255)];
    buf.put_u8(s.len() as u8);
    buf.put_slice(s);
}

/// Appends basic.deliver.
pub fn put_deliver(
    buf: &mut BytesMut,
    channel: u16,
    consumer_tag: &str,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &[u8],
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(60);
    put_short_str(buf, consumer_tag.as_bytes());
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(redelivered));
    put_short_str(buf, exchange.as_bytes());
    put_short_str(buf, routing_key);
    end_frame(buf, at);
}

/// Appends basic.get-ok.
pub fn put_get_ok(
    buf: &mut BytesMut,
    channel: u16,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &[u8],
    message_count: u32,
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(71);
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(redelivered));
    put_short_str(buf, exchange.as_bytes());
    put_short_str(buf, routing_key);
    buf.put_u32(message_count);
    end_frame(buf, at);
}

/// Appends basic.return.
pub fn put_return(
    buf: &mut BytesMut,
    channel: u16,
    reply_code: u16,
    text: &str,
    exchange: &str,
    routing_key: &[u8],
) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(50);
    buf.put_u16(reply_code);
    put_short_str(buf, text.as_bytes());
    put_short_str(buf, exchange.as_bytes());
    put_short_str(buf, routing_key);
    end_frame(buf, at);
}

/// Appends a publisher confirm: basic.ack or basic.nack.
pub fn put_confirm(buf: &mut BytesMut, channel: u16, ack: bool, delivery_tag: u64, multiple: bool) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(60);
    buf.put_u16(if ack { 80 } else { 120 });
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(multiple));
    end_frame(buf, at);
}

/// Appends a content header and the body split into frames of at most `frame_max`.
pub fn put_content(
    buf: &mut BytesMut,
    channel: u16,
    properties: &[u8],
    body: &[u8],
    frame_max: usize,
) {
    let at = begin_frame(buf, FRAME_HEADER, channel);
    crate::core::props::put_content_header(buf, body.len() as u64, properties);
    end_frame(buf, at);
    let chunk = frame_max.saturating_sub(8).max(1);
    for part in body.chunks(chunk) {
        let at = begin_frame(buf, FRAME_BODY, channel);
        buf.put_slice(part);
        end_frame(buf, at);
    }
}

/// Appends a heartbeat frame.
pub fn put_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_cut_and_checked() {
        let mut buf = BytesMut::new();
        put_heartbeat(&mut buf);
        put_confirm(&mut buf, 3, true, 7, true);
        let hb = next_frame(&mut buf, 4096).unwrap().unwrap();
        assert_eq!(
            (hb.kind, hb.channel, hb.payload.len()),
            (FRAME_HEARTBEAT, 0, 0)
        );
        let m = next_frame(&mut buf, 4096).unwrap().unwrap();
        assert_eq!(m.channel, 3);
        match parse_method(&m.payload).unwrap() {
            AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Ack(a)) => {
                assert_eq!(a.delivery_tag, 7);
                assert!(a.multiple);
            }
            other => panic!("{other:?}"),
        }
        assert!(next_frame(&mut buf, 4096).unwrap().is_none());
    }

    #[test]
    fn bad_frame_end_is_a_frame_error() {
        let mut buf = BytesMut::from(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xAB][..]);
        assert_eq!(
            next_frame(&mut buf, 4096).unwrap_err().code,
            code::FRAME_ERROR
        );
    }

    #[test]
    fn oversized_frame_is_refused_from_its_header() {
        let mut buf = BytesMut::from(&[FRAME_BODY, 0, 1, 0, 1, 0, 0][..]);
        assert_eq!(
            next_frame(&mut buf, 4096).unwrap_err().code,
            code::FRAME_ERROR
        );
    }

    #[test]
    fn unknown_class_is_not_implemented() {
        let e = parse_method(&[0, 99, 0, 10]).unwrap_err();
        assert_eq!(
            (e.code, e.scope),
            (code::NOT_IMPLEMENTED, Scope::Connection)
        );
    }

    #[test]
    fn deliver_round_trips_through_amq_protocol() {
        let mut buf = BytesMut::new();
        put_deliver(&mut buf, 1, "ctag", 42, true, "amq.topic", b"a.b");
        let f = next_frame(&mut buf, 4096).unwrap().unwrap();
        match parse_method(&f.payload).unwrap() {
            AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Deliver(d)) => {
                assert_eq!(d.consumer_tag.as_str(), "ctag");
                assert_eq!(d.delivery_tag, 42);
                assert!(d.redelivered);
                assert_eq!(d.exchange.as_str(), "amq.topic");
                assert_eq!(d.routing_key.as_str(), "a.b");
            }
            other => panic!("{other:?}"),
        }
    }
}
