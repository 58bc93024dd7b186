//! A lean AMQP 0-9-1 client for generating load, the AMQP twin of
//! [`crate::mqtt`].
//!
//! lapin spends a task hop, a future and several allocations per message
//! (about 0.8 core at 17k msg/s), so it cannot drive a broker at hundreds of
//! thousands of messages per second on a small machine. Here each connection
//! is one task with one read and one write buffer: publishes are encoded
//! straight into the write buffer and written in large batches, and what is
//! read is cut into frames in place.
//!
//! The codec is split by how often a frame is seen:
//!
//! * methods sent or received a few times per connection (handshake,
//!   declares, qos, consume, close) are generated and parsed with
//!   amq-protocol, the codec the gateway and lapin use, so their field
//!   tables and bit packing follow the spec without being written again;
//! * the frames of every message (basic.publish with its content header and
//!   body, basic.deliver, basic.ack and basic.nack) are written and read by
//!   hand here ([`put_publish`], [`put_ack`], [`Inbound`]): amq-protocol would
//!   build an `AMQPClass` with owned strings per message and serialise it
//!   through a `Vec`, the per-message allocation this client exists to avoid.
//!
//! Heartbeats are turned off (tune-ok heartbeat 0, which RabbitMQ and Tether
//! both accept): a run's connections are never idle long enough to need them.
//! The send time travels in the first bytes of each body
//! ([`crate::latency::stamp`]).

use std::fmt;
use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, gen_frame};
use amq_protocol::protocol::{AMQPClass, basic, channel, confirm, connection, queue};
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::{Buf, BufMut, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::Instant;

use crate::{Error, latency, net};

/// Method frame type octet.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type octet.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type octet.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type octet.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// The 0-9-1 protocol header a client opens with.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame size used when the peer leaves it open (tune frame_max 0), and the
/// sink's offer.
pub const FRAME_MAX: u32 = 128 * 1024;
/// The smallest frame_max the protocol allows.
pub const MIN_FRAME_MAX: u32 = 4096;
/// How long connecting (TCP, handshake) and each setup method may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes of frame header (type, channel, size) before a payload.
const FRAME_HEAD: usize = 7;
/// Class id of `basic`.
const BASIC: u16 = 60;

/// One whole frame at the front of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// Frame type octet.
    pub kind: u8,
    /// Channel number.
    pub channel: u16,
    /// The payload, between the header and the frame-end octet.
    pub payload: &'a [u8],
    /// Bytes the whole frame occupies (to advance the buffer by).
    pub len: usize,
}

impl Frame<'_> {
    /// Class and method ids of a method frame (zeros if too short).
    pub fn method_id(&self) -> (u16, u16) {
        match self.payload {
            [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
            _ => (0, 0),
        }
    }
}

/// The frame at the front of `buf`, if it is all there. Frames larger than
/// `frame_max`, unknown frame types and a wrong frame-end octet are errors.
pub fn frame(buf: &[u8], frame_max: usize) -> Result<Option<Frame<'_>>, Error> {
    let Some(head) = buf.get(..FRAME_HEAD) else {
        return Ok(None);
    };
    let kind = head[0];
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        if buf.starts_with(b"AMQP") {
            return Err(
                "the peer answered with a protocol header: it does not speak AMQP 0-9-1".into(),
            );
        }
        return Err(format!("unknown AMQP frame type {kind}").into());
    }
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    let len = size + FRAME_HEAD + 1;
    if len > frame_max {
        return Err(format!("AMQP frame of {len} bytes exceeds frame_max {frame_max}").into());
    }
    let Some(whole) = buf.get(..len) else {
        return Ok(None);
    };
    if whole[len - 1] != FRAME_END {
        return Err(format!(
            "AMQP frame ends with {:#04x} instead of 0xCE",
            whole[len - 1]
        )
        .into());
    }
    Ok(Some(Frame {
        kind,
        channel,
        payload: &whole[FRAME_HEAD..len - 1],
        len,
    }))
}

/// Starts a frame in `buf`; returns where its size goes, for [`end_frame`].
pub fn begin_frame(buf: &mut BytesMut, kind: u8, channel: u16) -> usize {
    buf.put_u8(kind);
    buf.put_u16(channel);
    let at = buf.len();
    buf.put_u32(0);
    at
}

/// Finishes a frame begun with [`begin_frame`]: its size and end octet.
pub fn end_frame(buf: &mut BytesMut, size_at: usize) {
    let size = (buf.len() - size_at - 4) as u32;
    buf[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

fn put_short_str(buf: &mut BytesMut, s: &str) -> Result<(), Error> {
    let len = u8::try_from(s.len()).map_err(|_| format!("{s:?} is longer than 255 bytes"))?;
    buf.put_u8(len);
    buf.put_slice(s.as_bytes());
    Ok(())
}

/// Appends a method frame generated by amq-protocol (for the rare methods;
/// it allocates).
pub fn put_method(buf: &mut BytesMut, channel: u16, method: AMQPClass) -> Result<(), Error> {
    let frame = AMQPFrame::Method(channel, method);
    let (bytes, _) = cookie_factory::r#gen(gen_frame(&frame), Vec::new())
        .map_err(|e| format!("cannot encode an AMQP method: {e:?}"))?;
    buf.extend_from_slice(&bytes);
    Ok(())
}

/// Appends basic.publish, its content header and `body` in frames of at most
/// `frame_max` bytes. Persistent messages carry delivery-mode 2, others no
/// properties at all.
pub fn put_publish(
    buf: &mut BytesMut,
    channel: u16,
    exchange: &str,
    routing_key: &str,
    persistent: bool,
    body: &[u8],
    frame_max: usize,
) -> Result<(), Error> {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(BASIC);
    buf.put_u16(40);
    buf.put_u16(0); // reserved (ticket)
    put_short_str(buf, exchange)?;
    put_short_str(buf, routing_key)?;
    buf.put_u8(0); // neither mandatory nor immediate
    end_frame(buf, at);

    let at = begin_frame(buf, FRAME_HEADER, channel);
    buf.put_u16(BASIC);
    buf.put_u16(0); // weight
    buf.put_u64(body.len() as u64);
    if persistent {
        buf.put_u16(0x1000); // property flags: delivery-mode only
        buf.put_u8(2);
    } else {
        buf.put_u16(0);
    }
    end_frame(buf, at);

    let chunk = frame_max.saturating_sub(FRAME_HEAD + 1).max(1);
    for part in body.chunks(chunk) {
        let at = begin_frame(buf, FRAME_BODY, channel);
        buf.put_slice(part);
        end_frame(buf, at);
    }
    Ok(())
}

/// Appends basic.ack: a consumer's acknowledgement, or a broker's publisher
/// confirm (`multiple`: everything up to `delivery_tag`).
pub fn put_ack(buf: &mut BytesMut, channel: u16, delivery_tag: u64, multiple: bool) {
    let at = begin_frame(buf, FRAME_METHOD, channel);
    buf.put_u16(BASIC);
    buf.put_u16(80);
    buf.put_u64(delivery_tag);
    buf.put_u8(u8::from(multiple));
    end_frame(buf, at);
}

/// Client or server properties of the handshake: a product name and the
/// capabilities claimed.
pub fn peer_properties(product: &str, capabilities: &[&str]) -> FieldTable {
    let mut caps = FieldTable::default();
    for &c in capabilities {
        caps.insert(c.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert(
        "product".into(),
        AMQPValue::LongString(LongString::from(product)),
    );
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props
}

/// Parses a method frame's payload with amq-protocol.
pub fn parse_method(payload: &[u8]) -> Result<AMQPClass, Error> {
    match amq_protocol::protocol::parse_class(payload) {
        Ok((_, method)) => Ok(method),
        Err(e) => {
            let (class, method) = (
                payload
                    .get(..2)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
                payload
                    .get(2..4)
                    .map_or(0, |b| u16::from_be_bytes([b[0], b[1]])),
            );
            Err(format!("AMQP method {class}.{method} does not parse: {e}").into())
        }
    }
}

/// The peer closed a channel or the whole connection (channel.close or
/// connection.close), with its reply code and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// Whether the whole connection was closed (else one channel).
    pub connection: bool,
    /// The channel closed (0 for the connection).
    pub channel: u16,
    /// Reply code (e.g. 406 PRECONDITION_FAILED, 404 NOT_FOUND).
    pub code: u16,
    /// Reply text.
    pub text: String,
    /// Class of the method that caused it (0 if none).
    pub class_id: u16,
    /// The method that caused it (0 if none).
    pub method_id: u16,
}

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.connection {
            write!(f, "the broker closed the connection")?;
        } else {
            write!(f, "the broker closed channel {}", self.channel)?;
        }
        write!(f, ": {} {}", self.code, self.text)?;
        if self.class_id != 0 {
            write!(f, " (on method {}.{})", self.class_id, self.method_id)?;
        }
        Ok(())
    }
}

impl std::error::Error for Closed {}

impl Closed {
    /// The [`Closed`] inside `e`, if that is what `e` is.
    pub fn of(e: &Error) -> Option<&Closed> {
        e.downcast_ref::<Closed>()
    }
}

/// Something read from the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A whole message delivered: basic.deliver and all of its content.
    Delivery {
        /// Channel it came on.
        channel: u16,
        /// Its delivery tag (to acknowledge it).
        delivery_tag: u64,
        /// The send time stamped in its body, if it carries one.
        sent: Option<Instant>,
    },
    /// A publisher confirm: basic.ack (`ack`) or basic.nack.
    Confirm {
        /// Channel it came on.
        channel: u16,
        /// The publish sequence number confirmed.
        delivery_tag: u64,
        /// Whether every number up to `delivery_tag` is confirmed.
        multiple: bool,
        /// Ack, or nack (the broker could not take the message).
        ack: bool,
    },
    /// Any other method (the replies to setup methods), parsed.
    Method {
        /// Channel it came on.
        channel: u16,
        /// The method.
        method: AMQPClass,
    },
}

/// Where the reader is in a message's content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Content {
    /// Between messages: the next frame is a method or a heartbeat.
    #[default]
    Idle,
    /// After basic.deliver (or a return / get-ok, `deliver` None): the
    /// content header is next.
    Header { deliver: Option<(u16, u64)> },
    /// Body frames, `remaining` bytes to go.
    Body {
        deliver: Option<(u16, u64)>,
        remaining: u64,
        sent: Option<Instant>,
        first: bool,
    },
}

/// The reading side of a connection as a state machine: frames in, [`Event`]s
/// out, no I/O. Deliveries are parsed by hand (the hot path); anything else
/// goes through amq-protocol. channel.close and connection.close become a
/// [`Closed`] error.
#[derive(Debug, Default)]
pub struct Inbound {
    content: Content,
}

impl Inbound {
    /// Consumes frames from the front of `buf` until one makes an event;
    /// `Ok(None)` when `buf` holds no further whole frame.
    pub fn next(&mut self, buf: &mut BytesMut, frame_max: usize) -> Result<Option<Event>, Error> {
        loop {
            let Some(f) = frame(buf, frame_max)? else {
                return Ok(None);
            };
            let len = f.len;
            let event = self.on_frame(&f)?;
            buf.advance(len);
            if event.is_some() {
                return Ok(event);
            }
        }
    }

    fn on_frame(&mut self, f: &Frame<'_>) -> Result<Option<Event>, Error> {
        match (f.kind, self.content) {
            (FRAME_HEARTBEAT, _) => Ok(None),
            (FRAME_METHOD, Content::Idle) => self.on_method(f),
            (FRAME_HEADER, Content::Header { deliver }) => {
                let size = f
                    .payload
                    .get(4..12)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or("content header shorter than 12 bytes")?;
                self.content = Content::Body {
                    deliver,
                    remaining: size,
                    sent: None,
                    first: true,
                };
                Ok(self.finish_content())
            }
            (
                FRAME_BODY,
                Content::Body {
                    deliver,
                    remaining,
                    sent,
                    first,
                },
            ) => {
                let len = f.payload.len() as u64;
                let remaining = remaining
                    .checked_sub(len)
                    .ok_or("content body longer than its header said")?;
                let sent = if first {
                    latency::stamped_at(f.payload)
                } else {
                    sent
                };
                self.content = Content::Body {
                    deliver,
                    remaining,
                    sent,
                    first: false,
                };
                Ok(self.finish_content())
            }
            (kind, state) => {
                Err(format!("unexpected AMQP frame type {kind} (reading {state:?})").into())
            }
        }
    }

    /// The delivery, once a message's content is complete.
    fn finish_content(&mut self) -> Option<Event> {
        let Content::Body {
            deliver,
            remaining: 0,
            sent,
            ..
        } = self.content
        else {
            return None;
        };
        self.content = Content::Idle;
        deliver.map(|(channel, delivery_tag)| Event::Delivery {
            channel,
            delivery_tag,
            sent,
        })
    }

    fn on_method(&mut self, f: &Frame<'_>) -> Result<Option<Event>, Error> {
        let p = f.payload;
        let short = || Error::from("method frame too short");
        match f.method_id() {
            (BASIC, 60) => {
                // deliver: consumer-tag (short string), delivery-tag, ...
                let tag_len = usize::from(*p.get(4).ok_or_else(short)?);
                let at = 5 + tag_len;
                let tag = p
                    .get(at..at + 8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(short)?;
                self.content = Content::Header {
                    deliver: Some((f.channel, tag)),
                };
                Ok(None)
            }
            (BASIC, m @ (80 | 120)) => {
                let tag = p
                    .get(4..12)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(short)?;
                let bits = *p.get(12).ok_or_else(short)?;
                Ok(Some(Event::Confirm {
                    channel: f.channel,
                    delivery_tag: tag,
                    multiple: bits & 1 != 0,
                    ack: m == 80,
                }))
            }
            // basic.return and basic.get-ok: content follows, not a delivery.
            (BASIC, 50 | 71) => {
                self.content = Content::Header { deliver: None };
                Ok(None)
            }
            _ => match parse_method(p)? {
                AMQPClass::Connection(connection::AMQPMethod::Close(c)) => Err(Closed {
                    connection: true,
                    channel: 0,
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                }
                .into()),
                AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Err(Closed {
                    connection: false,
                    channel: f.channel,
                    code: c.reply_code,
                    text: c.reply_text.to_string(),
                    class_id: c.class_id,
                    method_id: c.method_id,
                }
                .into()),
                method => Ok(Some(Event::Method {
                    channel: f.channel,
                    method,
                })),
            },
        }
    }
}

/// Where and as whom to connect, from an `amqp://user:pass@host:port/vhost`
/// URI (user and password default to guest, the vhost to `/`).
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `host:port`.
    pub addr: String,
    /// PLAIN user name.
    pub user: String,
    /// PLAIN password.
    pub password: String,
    /// Virtual host.
    pub vhost: String,
}

impl ConnectOptions {
    /// Parses an AMQP URI (with amq-protocol's parser: `%2f` is `/`).
    pub fn from_uri(uri: &str) -> Result<Self, Error> {
        let u: amq_protocol::uri::AMQPUri = uri
            .parse()
            .map_err(|e| format!("bad AMQP URI {:?}: {e}", crate::report::redact(uri)))?;
        Ok(ConnectOptions {
            addr: format!("{}:{}", u.authority.host, u.authority.port),
            user: u.authority.userinfo.username,
            password: u.authority.userinfo.password,
            vhost: u.vhost,
        })
    }
}

/// Options of queue.declare.
#[derive(Debug, Clone, Copy, Default)]
pub struct QueueOptions {
    /// Survives a broker restart (and may hold persistent messages on disk).
    pub durable: bool,
    /// Only this connection may use it; deleted when it closes.
    pub exclusive: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
}

/// An open AMQP connection. Setup methods ([`Conn::queue_declare`] and so
/// on) send and wait for their reply; the per-message calls
/// ([`Conn::push_publish`], [`Conn::push_ack`]) only encode into the write
/// buffer, which the caller writes with [`net::write_some`] or
/// [`Conn::flush`], and [`Conn::next_event`] reads what [`net::fill`] read.
pub struct Conn {
    /// Read half.
    pub read: OwnedReadHalf,
    /// Write half.
    pub write: OwnedWriteHalf,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Encoded frames not yet written.
    pub wbuf: BytesMut,
    /// The negotiated largest frame.
    pub frame_max: usize,
    /// The negotiated highest channel number.
    pub channel_max: u16,
    inbound: Inbound,
}

impl Conn {
    /// Opens the TCP connection and runs the handshake (PLAIN, the broker's
    /// frame_max and channel_max, no heartbeats, connection.open).
    pub async fn connect(opts: &ConnectOptions) -> Result<Conn, Error> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(opts))
            .await
            .map_err(|_| Error::from(format!("connecting to {} timed out", opts.addr)))?
    }

    async fn connect_inner(opts: &ConnectOptions) -> Result<Conn, Error> {
        let stream = TcpStream::connect(&opts.addr)
            .await
            .map_err(|e| Error::from(format!("cannot connect to {}: {e}", opts.addr)))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut conn = Conn {
            read,
            write,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            // Until tune: the largest frame we would ever accept.
            frame_max: 1 << 20,
            channel_max: 0,
            inbound: Inbound::default(),
        };
        conn.wbuf.extend_from_slice(PROTOCOL_HEADER);
        conn.flush().await?;
        match conn.recv_method(0).await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(_)) => {}
            other => return Err(unexpected("connection.start", &other)),
        }
        let client = peer_properties(
            "tether-bench",
            &[
                "publisher_confirms",
                "basic.nack",
                "consumer_cancel_notify",
                "connection.blocked",
            ],
        );
        let response = format!("\0{}\0{}", opts.user, opts.password);
        conn.push_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: client,
                mechanism: "PLAIN".into(),
                response: LongString::from(response),
                locale: "en_US".into(),
            })),
        )?;
        conn.flush().await?;
        let tune = match conn.recv_method(0).await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(unexpected("connection.tune", &other)),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.max(MIN_FRAME_MAX),
        };
        let channel_max = match tune.channel_max {
            0 => 2047,
            n => n,
        };
        conn.push_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max,
                frame_max,
                heartbeat: 0,
            })),
        )?;
        conn.frame_max = frame_max as usize;
        conn.channel_max = channel_max;
        conn.push_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: ShortString::from(opts.vhost.as_str()),
            })),
        )?;
        conn.flush().await?;
        match conn.recv_method(0).await? {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => Ok(conn),
            other => Err(unexpected("connection.open-ok", &other)),
        }
    }

    /// The next event in what has been read, if a whole one is there.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        self.inbound.next(&mut self.rbuf, self.frame_max)
    }

    /// Reads more bytes; see [`net::fill`].
    pub async fn fill(&mut self) -> Result<(), Error> {
        net::fill(&mut self.read, &mut self.rbuf).await
    }

    /// Writes the whole write buffer.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.write.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Encodes a (rare) method at the end of the write buffer.
    pub fn push_method(&mut self, channel: u16, method: AMQPClass) -> Result<(), Error> {
        put_method(&mut self.wbuf, channel, method)
    }

    /// Encodes a publish (method, header, body frames); see [`put_publish`].
    pub fn push_publish(
        &mut self,
        channel: u16,
        exchange: &str,
        routing_key: &str,
        persistent: bool,
        body: &[u8],
    ) -> Result<(), Error> {
        put_publish(
            &mut self.wbuf,
            channel,
            exchange,
            routing_key,
            persistent,
            body,
            self.frame_max,
        )
    }

    /// Encodes basic.ack for `delivery_tag` (and every earlier one with
    /// `multiple`).
    pub fn push_ack(&mut self, channel: u16, delivery_tag: u64, multiple: bool) {
        put_ack(&mut self.wbuf, channel, delivery_tag, multiple);
    }

    /// Waits for the next method on `channel` (skipping anything else). A
    /// channel.close is answered with close-ok, so the channel can be opened
    /// again, and returned as a [`Closed`] error.
    async fn recv_method(&mut self, channel: u16) -> Result<AMQPClass, Error> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        loop {
            match self.next_event() {
                Ok(Some(Event::Method { channel: c, method })) if c == channel => {
                    return Ok(method);
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    if let Some(c) = Closed::of(&e).filter(|c| !c.connection) {
                        let ch = c.channel;
                        self.push_method(
                            ch,
                            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                        )?;
                        self.flush().await?;
                    }
                    return Err(e);
                }
            }
            tokio::time::timeout_at(deadline, self.fill())
                .await
                .map_err(|_| Error::from("no answer from the broker"))??;
        }
    }

    /// Sends `method` on `channel` and waits for its reply.
    pub async fn call(&mut self, channel: u16, method: AMQPClass) -> Result<AMQPClass, Error> {
        self.push_method(channel, method)?;
        self.flush().await?;
        self.recv_method(channel).await
    }

    /// channel.open.
    pub async fn open_channel(&mut self, channel: u16) -> Result<(), Error> {
        match self
            .call(
                channel,
                AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            )
            .await?
        {
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) => Ok(()),
            other => Err(unexpected("channel.open-ok", &other)),
        }
    }

    /// queue.declare; returns how many messages the queue holds.
    pub async fn queue_declare(
        &mut self,
        channel: u16,
        name: &str,
        opts: QueueOptions,
    ) -> Result<u32, Error> {
        let declare = queue::Declare {
            queue: name.into(),
            passive: false,
            durable: opts.durable,
            exclusive: opts.exclusive,
            auto_delete: opts.auto_delete,
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self
            .call(
                channel,
                AMQPClass::Queue(queue::AMQPMethod::Declare(declare)),
            )
            .await?
        {
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => Ok(ok.message_count),
            other => Err(unexpected("queue.declare-ok", &other)),
        }
    }

    /// queue.bind of `queue` to `exchange` with `routing_key`.
    pub async fn queue_bind(
        &mut self,
        channel: u16,
        queue: &str,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), Error> {
        let bind = queue::Bind {
            queue: queue.into(),
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self
            .call(channel, AMQPClass::Queue(queue::AMQPMethod::Bind(bind)))
            .await?
        {
            AMQPClass::Queue(queue::AMQPMethod::BindOk(_)) => Ok(()),
            other => Err(unexpected("queue.bind-ok", &other)),
        }
    }

    /// queue.purge; returns how many messages were dropped.
    pub async fn queue_purge(&mut self, channel: u16, queue: &str) -> Result<u32, Error> {
        let purge = queue::Purge {
            queue: queue.into(),
            nowait: false,
        };
        match self
            .call(channel, AMQPClass::Queue(queue::AMQPMethod::Purge(purge)))
            .await?
        {
            AMQPClass::Queue(queue::AMQPMethod::PurgeOk(ok)) => Ok(ok.message_count),
            other => Err(unexpected("queue.purge-ok", &other)),
        }
    }

    /// queue.delete (whether or not it is empty or used).
    pub async fn queue_delete(&mut self, channel: u16, queue: &str) -> Result<(), Error> {
        let delete = queue::Delete {
            queue: queue.into(),
            if_unused: false,
            if_empty: false,
            nowait: false,
        };
        match self
            .call(channel, AMQPClass::Queue(queue::AMQPMethod::Delete(delete)))
            .await?
        {
            AMQPClass::Queue(queue::AMQPMethod::DeleteOk(_)) => Ok(()),
            other => Err(unexpected("queue.delete-ok", &other)),
        }
    }

    /// basic.qos: at most `prefetch` unacknowledged deliveries per consumer.
    pub async fn basic_qos(&mut self, channel: u16, prefetch: u16) -> Result<(), Error> {
        let qos = basic::Qos {
            prefetch_count: prefetch,
            global: false,
        };
        match self
            .call(channel, AMQPClass::Basic(basic::AMQPMethod::Qos(qos)))
            .await?
        {
            AMQPClass::Basic(basic::AMQPMethod::QosOk(_)) => Ok(()),
            other => Err(unexpected("basic.qos-ok", &other)),
        }
    }

    /// confirm.select: from now on the broker confirms every publish on
    /// `channel`, numbering them from 1.
    pub async fn confirm_select(&mut self, channel: u16) -> Result<(), Error> {
        let select = confirm::Select { nowait: false };
        match self
            .call(
                channel,
                AMQPClass::Confirm(confirm::AMQPMethod::Select(select)),
            )
            .await?
        {
            AMQPClass::Confirm(confirm::AMQPMethod::SelectOk(_)) => Ok(()),
            other => Err(unexpected("confirm.select-ok", &other)),
        }
    }

    /// basic.consume from `queue` (`no_ack`: the broker counts a message as
    /// acknowledged once sent).
    pub async fn basic_consume(
        &mut self,
        channel: u16,
        queue: &str,
        consumer_tag: &str,
        no_ack: bool,
    ) -> Result<(), Error> {
        let consume = basic::Consume {
            queue: queue.into(),
            consumer_tag: consumer_tag.into(),
            no_local: false,
            no_ack,
            exclusive: false,
            nowait: false,
            arguments: FieldTable::default(),
        };
        match self
            .call(
                channel,
                AMQPClass::Basic(basic::AMQPMethod::Consume(consume)),
            )
            .await?
        {
            AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(_)) => Ok(()),
            other => Err(unexpected("basic.consume-ok", &other)),
        }
    }

    /// Closes cleanly: connection.close, then waits (briefly, ignoring
    /// deliveries still arriving) for close-ok. Errors are ignored: the run
    /// is over.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            self.push_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "bench done".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            )?;
            self.flush().await?;
            loop {
                match self.next_event()? {
                    Some(Event::Method {
                        method: AMQPClass::Connection(connection::AMQPMethod::CloseOk(_)),
                        ..
                    }) => return Ok::<(), Error>(()),
                    Some(_) => continue,
                    None => self.fill().await?,
                }
            }
        })
        .await;
        let _ = self.write.shutdown().await;
    }
}

fn unexpected(wanted: &str, got: &AMQPClass) -> Error {
    format!(
        "expected {wanted}, got {}.{}",
        got.get_amqp_class_id(),
        got.get_amqp_method_id()
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(buf: &mut BytesMut, channel: u16, tag: u64) {
        // Generated by amq-protocol, not by the code under test.
        put_method(
            buf,
            channel,
            AMQPClass::Basic(basic::AMQPMethod::Deliver(basic::Deliver {
                consumer_tag: "ctag-1".into(),
                delivery_tag: tag,
                redelivered: false,
                exchange: "amq.topic".into(),
                routing_key: "bench.0".into(),
            })),
        )
        .unwrap();
    }

    fn header(buf: &mut BytesMut, channel: u16, body_size: u64) {
        let at = begin_frame(buf, FRAME_HEADER, channel);
        buf.put_u16(BASIC);
        buf.put_u16(0);
        buf.put_u64(body_size);
        buf.put_u16(0);
        end_frame(buf, at);
    }

    fn body(buf: &mut BytesMut, channel: u16, bytes: &[u8]) {
        let at = begin_frame(buf, FRAME_BODY, channel);
        buf.put_slice(bytes);
        end_frame(buf, at);
    }

    #[test]
    fn publish_frames_parse_with_amq_protocol() {
        let mut buf = BytesMut::new();
        let body_bytes: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        put_publish(&mut buf, 3, "", "q1", true, &body_bytes, 4096).unwrap();
        let (rest, parsed) =
            amq_protocol::frame::parse_frame(&buf[..]).expect("method frame parses");
        match parsed {
            AMQPFrame::Method(3, AMQPClass::Basic(basic::AMQPMethod::Publish(p))) => {
                assert_eq!((p.exchange.as_str(), p.routing_key.as_str()), ("", "q1"));
                assert!(!p.mandatory && !p.immediate);
            }
            other => panic!("{other:?}"),
        }
        let (mut rest, parsed) = amq_protocol::frame::parse_frame(rest).expect("header parses");
        match parsed {
            AMQPFrame::Header(3, h) => {
                assert_eq!(h.body_size, 10_000);
                assert_eq!(h.properties.delivery_mode(), &Some(2));
            }
            other => panic!("{other:?}"),
        }
        // 10 000 bytes in frames of at most 4096 (4088 bytes of payload).
        let mut got = Vec::new();
        let mut frames = 0;
        while !rest.is_empty() {
            let (r, parsed) = amq_protocol::frame::parse_frame(rest).expect("body parses");
            let AMQPFrame::Body(3, part) = parsed else {
                panic!("{parsed:?}")
            };
            assert!(part.len() + 8 <= 4096);
            got.extend_from_slice(&part);
            frames += 1;
            rest = r;
        }
        assert_eq!((got, frames), (body_bytes, 3));
    }

    #[test]
    fn transient_publishes_carry_no_properties() {
        let mut buf = BytesMut::new();
        put_publish(&mut buf, 1, "amq.topic", "a.b", false, b"12345678", 4096).unwrap();
        let (rest, _) = amq_protocol::frame::parse_frame(&buf[..]).unwrap();
        let (_, parsed) = amq_protocol::frame::parse_frame(rest).unwrap();
        let AMQPFrame::Header(1, h) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(h.properties, basic::AMQPProperties::default());
    }

    #[test]
    fn a_delivery_split_over_frames_and_reads_is_one_event_with_its_stamp() {
        // Later than the stamps' epoch (fixed at first use), so not zero.
        let sent = Instant::now() + Duration::from_millis(1);
        let mut payload = vec![7u8; 20];
        latency::stamp(&mut payload, sent);
        let mut wire = BytesMut::new();
        put_heartbeat(&mut wire);
        deliver(&mut wire, 1, 42);
        header(&mut wire, 1, 20);
        body(&mut wire, 1, &payload[..12]);
        body(&mut wire, 1, &payload[12..]);

        let mut inbound = Inbound::default();
        let mut buf = BytesMut::new();
        let mut events = Vec::new();
        // Feed the bytes a few at a time, as reads may cut them anywhere.
        for chunk in wire.chunks(5) {
            buf.extend_from_slice(chunk);
            while let Some(e) = inbound.next(&mut buf, 4096).unwrap() {
                events.push(e);
            }
        }
        assert!(buf.is_empty());
        let [
            Event::Delivery {
                channel: 1,
                delivery_tag: 42,
                sent: Some(at),
            },
        ] = events[..]
        else {
            panic!("{events:?}")
        };
        assert!(at.max(sent) - at.min(sent) < Duration::from_micros(1));
    }

    #[test]
    fn empty_bodies_and_returned_messages() {
        let mut buf = BytesMut::new();
        deliver(&mut buf, 2, 1);
        header(&mut buf, 2, 0);
        // A basic.return with its content is not a delivery.
        put_method(
            &mut buf,
            2,
            AMQPClass::Basic(basic::AMQPMethod::Return(basic::Return {
                reply_code: 312,
                reply_text: "NO_ROUTE".into(),
                exchange: "".into(),
                routing_key: "nowhere".into(),
            })),
        )
        .unwrap();
        header(&mut buf, 2, 3);
        body(&mut buf, 2, b"abc");
        deliver(&mut buf, 2, 2);
        header(&mut buf, 2, 1);
        body(&mut buf, 2, b"x");
        let mut inbound = Inbound::default();
        let mut tags = Vec::new();
        while let Some(e) = inbound.next(&mut buf, 4096).unwrap() {
            match e {
                Event::Delivery {
                    delivery_tag, sent, ..
                } => {
                    assert_eq!(sent, None);
                    tags.push(delivery_tag);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tags, vec![1, 2]);
    }

    #[test]
    fn confirms_acks_and_nacks() {
        let mut buf = BytesMut::new();
        put_ack(&mut buf, 1, 256, true);
        put_method(
            &mut buf,
            1,
            AMQPClass::Basic(basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: 257,
                multiple: false,
                requeue: true,
            })),
        )
        .unwrap();
        let mut inbound = Inbound::default();
        assert_eq!(
            inbound.next(&mut buf, 4096).unwrap(),
            Some(Event::Confirm {
                channel: 1,
                delivery_tag: 256,
                multiple: true,
                ack: true
            })
        );
        assert_eq!(
            inbound.next(&mut buf, 4096).unwrap(),
            Some(Event::Confirm {
                channel: 1,
                delivery_tag: 257,
                multiple: false,
                ack: false
            })
        );
        assert_eq!(inbound.next(&mut buf, 4096).unwrap(), None);
    }

    #[test]
    fn closes_from_the_broker_are_errors_with_code_and_text() {
        let mut buf = BytesMut::new();
        put_method(
            &mut buf,
            1,
            AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                reply_code: 406,
                reply_text: "PRECONDITION_FAILED - inequivalent arg 'durable'".into(),
                class_id: 50,
                method_id: 10,
            })),
        )
        .unwrap();
        let e = Inbound::default().next(&mut buf, 4096).unwrap_err();
        let c = Closed::of(&e).expect("a Closed error");
        assert_eq!((c.connection, c.channel, c.code), (false, 1, 406));
        assert_eq!(
            e.to_string(),
            "the broker closed channel 1: 406 PRECONDITION_FAILED - inequivalent arg 'durable' (on method 50.10)"
        );

        let mut buf = BytesMut::new();
        put_method(
            &mut buf,
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: 320,
                reply_text: "CONNECTION_FORCED".into(),
                class_id: 0,
                method_id: 0,
            })),
        )
        .unwrap();
        let e = Inbound::default().next(&mut buf, 4096).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the broker closed the connection: 320 CONNECTION_FORCED"
        );
    }

    #[test]
    fn malformed_frames_are_errors() {
        let bad_end = [FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, 0xAB];
        assert!(frame(&bad_end, 4096).is_err());
        let too_big = [FRAME_BODY, 0, 1, 0, 1, 0, 0];
        assert!(frame(&too_big, 4096).is_err());
        assert!(frame(b"AMQP\x00\x00\x09\x01", 4096).is_err());
        // A partial frame is not an error yet.
        assert_eq!(
            frame(&[FRAME_BODY, 0, 1, 0, 0, 0, 4, 1, 2], 4096).unwrap(),
            None
        );
        // A body where a header is due.
        let mut buf = BytesMut::new();
        deliver(&mut buf, 1, 1);
        body(&mut buf, 1, b"x");
        assert!(Inbound::default().next(&mut buf, 4096).is_err());
    }

    fn put_heartbeat(buf: &mut BytesMut) {
        buf.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
    }

    #[test]
    fn uris_give_address_credentials_and_vhost() {
        let o = ConnectOptions::from_uri("amqp://u:p@10.0.0.1:5673/%2f").unwrap();
        assert_eq!(
            (
                o.addr.as_str(),
                o.user.as_str(),
                o.password.as_str(),
                o.vhost.as_str()
            ),
            ("10.0.0.1:5673", "u", "p", "/")
        );
        let o = ConnectOptions::from_uri("amqp://127.0.0.1:5672/%2f").unwrap();
        assert_eq!((o.user.as_str(), o.password.as_str()), ("guest", "guest"));
    }
}
