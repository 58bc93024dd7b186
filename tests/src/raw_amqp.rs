//! A raw-TCP AMQP 0-9-1 client for hand-built and deliberately broken frames.
//!
//! It performs the handshake by hand (protocol header, start/start-ok with
//! PLAIN, tune/tune-ok, open) and then writes exactly the bytes a test gives
//! it, reporting exactly what the gateway sends back: whole frames, raw bytes
//! (the protocol header a refused client gets), or the end of the connection.
//! Frames are built and parsed with amq-protocol, the codec lapin and the
//! gateway use; a test that needs a broken frame builds a good one and
//! corrupts its bytes, or uses [`raw_frame`].
//!
//! Use it where lapin would refuse to send something or hides what arrived.

use std::net::SocketAddr;
use std::time::Duration;

pub use amq_protocol::frame::{AMQPContentHeader, AMQPFrame};
pub use amq_protocol::protocol::{AMQPClass, BasicProperties, basic, channel, connection, queue};
pub use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The AMQP 0-9-1 protocol header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame type octets.
pub const FRAME_METHOD: u8 = 1;
/// Content header frame type.
pub const FRAME_HEADER: u8 = 2;
/// Content body frame type.
pub const FRAME_BODY: u8 = 3;
/// Heartbeat frame type.
pub const FRAME_HEARTBEAT: u8 = 8;
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;

/// Default wait for an answer from the gateway.
pub const WAIT: Duration = Duration::from_secs(5);
/// Largest frame the client accepts from the gateway.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Encodes a frame with amq-protocol.
pub fn encode(frame: &AMQPFrame) -> Vec<u8> {
    match cookie_factory::r#gen(amq_protocol::frame::gen_frame(frame), Vec::new()) {
        Ok((bytes, _)) => bytes,
        Err(e) => panic!("cannot encode {frame:?}: {e:?}"),
    }
}

/// A method frame.
pub fn method_frame(channel: u16, method: AMQPClass) -> Vec<u8> {
    encode(&AMQPFrame::Method(channel, method))
}

/// A content-header frame of class basic for a body of `body_size` bytes.
pub fn header_frame(channel: u16, body_size: u64, properties: BasicProperties) -> Vec<u8> {
    encode(&AMQPFrame::Header(
        channel,
        AMQPContentHeader {
            class_id: 60,
            body_size,
            properties,
        },
    ))
}

/// A content-body frame.
pub fn body_frame(channel: u16, body: &[u8]) -> Vec<u8> {
    encode(&AMQPFrame::Body(channel, body.to_vec()))
}

/// A frame of any type with any payload, built by hand (for what amq-protocol
/// will not generate: unknown classes, heartbeats with a payload, …).
pub fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(FRAME_END);
    f
}

/// basic.publish, its content header and one body frame.
pub fn publish_frames(channel: u16, exchange: &str, routing_key: &str, body: &[u8]) -> Vec<u8> {
    let mut out = method_frame(
        channel,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory: false,
            immediate: false,
        })),
    );
    out.extend(header_frame(
        channel,
        body.len() as u64,
        BasicProperties::default(),
    ));
    if !body.is_empty() {
        out.extend(body_frame(channel, body));
    }
    out
}

/// How the client logs in.
#[derive(Debug, Clone)]
pub struct Login {
    /// SASL mechanism (`PLAIN`).
    pub mechanism: String,
    /// The SASL response (`\0user\0password` for PLAIN).
    pub response: Vec<u8>,
    /// Virtual host to open.
    pub vhost: String,
    /// Announce the `authentication_failure_close` capability.
    pub auth_failure_close: bool,
    /// frame_max to answer in tune-ok (0: accept the server's).
    pub frame_max: u32,
}

impl Login {
    /// PLAIN `user`/`password` on vhost `/`, announcing authentication_failure_close.
    pub fn plain(user: &str, password: &str) -> Login {
        Login {
            mechanism: "PLAIN".into(),
            response: format!("\0{user}\0{password}").into_bytes(),
            vhost: "/".into(),
            auth_failure_close: true,
            frame_max: 0,
        }
    }
}

impl Default for Login {
    fn default() -> Self {
        Login::plain("guest", "guest")
    }
}

/// What the next read brought.
#[derive(Debug)]
pub enum Received {
    /// A complete frame (boxed: a parsed method is large).
    Frame(Box<AMQPFrame>),
    /// The gateway closed the connection (EOF or reset).
    Closed,
    /// Nothing within the wait.
    Timeout,
}

/// What the server offered in connection.start and connection.tune.
#[derive(Debug, Clone)]
pub struct Negotiated {
    /// connection.start.
    pub start: connection::Start,
    /// connection.tune.
    pub tune: connection::Tune,
}

/// A TCP connection speaking AMQP 0-9-1 by hand.
pub struct RawAmqp {
    stream: TcpStream,
    rbuf: BytesMut,
    /// Our end of the connection: the `peer` the gateway logs.
    pub local: SocketAddr,
}

impl RawAmqp {
    /// Opens a TCP connection and sends nothing.
    pub async fn tcp(addr: SocketAddr) -> RawAmqp {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        let local = stream.local_addr().expect("local addr");
        RawAmqp {
            stream,
            rbuf: BytesMut::new(),
            local,
        }
    }

    /// Sends the protocol header and reads connection.start.
    pub async fn start(addr: SocketAddr) -> (RawAmqp, connection::Start) {
        let mut c = RawAmqp::tcp(addr).await;
        c.send(PROTOCOL_HEADER).await;
        let start = match c.expect_method(0).await {
            AMQPClass::Connection(connection::AMQPMethod::Start(s)) => s,
            other => panic!("expected connection.start, got {other:?}"),
        };
        (c, start)
    }

    /// Handshakes up to (not including) the answer to connection.open, and
    /// returns what the server offered. After a refused login the server may
    /// have closed the connection instead of sending tune: see
    /// [`RawAmqp::login`].
    pub async fn handshake_with(addr: SocketAddr, login: &Login) -> (RawAmqp, Negotiated) {
        let (mut c, start) = RawAmqp::start(addr).await;
        c.send_start_ok(login).await;
        let tune = match c.expect_method(0).await {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => panic!("expected connection.tune, got {other:?}"),
        };
        c.send_tune_ok(&tune, login.frame_max).await;
        c.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: login.vhost.as_str().into(),
            })),
        )
        .await;
        (c, Negotiated { start, tune })
    }

    /// Sends start-ok for `login`.
    pub async fn send_start_ok(&mut self, login: &Login) {
        let mut caps = FieldTable::default();
        if login.auth_failure_close {
            caps.insert(
                "authentication_failure_close".into(),
                AMQPValue::Boolean(true),
            );
        }
        let mut props = FieldTable::default();
        props.insert("product".into(), AMQPValue::LongString("raw_amqp".into()));
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: login.mechanism.as_str().into(),
                response: LongString::from(login.response.clone()),
                locale: "en_US".into(),
            })),
        )
        .await;
    }

    /// Sends tune-ok: the server's channel_max, `frame_max` (0: the server's),
    /// and no heartbeats (so none arrive unasked).
    pub async fn send_tune_ok(&mut self, tune: &connection::Tune, frame_max: u32) {
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max: tune.channel_max,
                frame_max: if frame_max == 0 {
                    tune.frame_max
                } else {
                    frame_max
                },
                heartbeat: 0,
            })),
        )
        .await;
    }

    /// Completes a handshake for `login` (open-ok expected) and opens channel 1.
    pub async fn login(addr: SocketAddr, login: &Login) -> (RawAmqp, Negotiated) {
        let (mut c, negotiated) = RawAmqp::handshake_with(addr, login).await;
        match c.expect_method(0).await {
            AMQPClass::Connection(connection::AMQPMethod::OpenOk(_)) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
        c.open_channel(1).await;
        (c, negotiated)
    }

    /// A connection as guest on `/` with channel 1 open.
    pub async fn connect(addr: SocketAddr) -> RawAmqp {
        RawAmqp::login(addr, &Login::default()).await.0
    }

    /// Sends channel.open on `channel` and expects open-ok.
    pub async fn open_channel(&mut self, channel: u16) {
        self.send_method(
            channel,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
        )
        .await;
        match self.expect_method(channel).await {
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(_)) => {}
            other => panic!("expected channel.open-ok on {channel}, got {other:?}"),
        }
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes raw bytes, ignoring a connection the gateway already closed.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Encodes and writes one method frame.
    pub async fn send_method(&mut self, channel: u16, method: AMQPClass) {
        let bytes = method_frame(channel, method);
        self.send(&bytes).await;
    }

    /// Up to `n` raw bytes (fewer if the connection ends first), within `wait`.
    pub async fn recv_bytes(&mut self, n: usize, wait: Duration) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + wait;
        while self.rbuf.len() < n {
            self.rbuf.reserve(n);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                Ok(Ok(_)) => {}
            }
        }
        let take = n.min(self.rbuf.len());
        self.rbuf.split_to(take).to_vec()
    }

    /// The next frame, the end of the connection, or a timeout.
    pub async fn recv(&mut self, wait: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if self.rbuf.len() >= 7 {
                let size =
                    u32::from_be_bytes([self.rbuf[3], self.rbuf[4], self.rbuf[5], self.rbuf[6]])
                        as usize;
                assert!(size <= MAX_FRAME, "gateway sent a {size}-byte frame");
                if self.rbuf.len() >= size + 8 {
                    let bytes = self.rbuf.split_to(size + 8);
                    return match amq_protocol::frame::parse_frame(&bytes[..]) {
                        Ok(([], frame)) => Received::Frame(Box::new(frame)),
                        _ => panic!("gateway sent a malformed frame: {:02x?}", &bytes[..]),
                    };
                }
            }
            self.rbuf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Received::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => {
                    assert!(
                        self.rbuf.is_empty(),
                        "connection closed inside a frame: {:02x?}",
                        &self.rbuf[..]
                    );
                    return Received::Closed;
                }
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next frame other than a heartbeat; panics on close or timeout.
    pub async fn expect_frame(&mut self) -> AMQPFrame {
        loop {
            match self.recv(WAIT).await {
                Received::Frame(f) if *f == AMQPFrame::Heartbeat => continue,
                Received::Frame(f) => return *f,
                other => panic!("expected a frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must be a method on `channel`.
    pub async fn expect_method(&mut self, channel: u16) -> AMQPClass {
        match self.expect_frame().await {
            AMQPFrame::Method(ch, m) if ch == channel => m,
            other => panic!("expected a method on channel {channel}, got {other:?}"),
        }
    }

    /// Expects connection.close; returns it (answer with [`RawAmqp::close_ok`]).
    pub async fn expect_connection_close(&mut self) -> connection::Close {
        match self.expect_method(0).await {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => c,
            other => panic!("expected connection.close, got {other:?}"),
        }
    }

    /// Expects channel.close on `channel`; returns it.
    pub async fn expect_channel_close(&mut self, channel: u16) -> channel::Close {
        match self.expect_method(channel).await {
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => c,
            other => panic!("expected channel.close on {channel}, got {other:?}"),
        }
    }

    /// Answers a connection.close with close-ok and expects the gateway to
    /// close the socket.
    pub async fn close_ok(&mut self) {
        self.try_send(&method_frame(
            0,
            AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
        ))
        .await;
        self.expect_closed().await;
    }

    /// Answers a channel.close with close-ok.
    pub async fn channel_close_ok(&mut self, channel: u16) {
        self.send_method(
            channel,
            AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
        )
        .await;
    }

    /// Expects the gateway to close the connection, with no further frame.
    pub async fn expect_closed(&mut self) {
        match self.recv(WAIT).await {
            Received::Closed => {}
            other => panic!("expected the connection to be closed, got {other:?}"),
        }
    }

    /// Declares a queue (non-exclusive, auto-delete off) and expects declare-ok.
    pub async fn declare_queue(&mut self, channel: u16, name: &str) -> queue::DeclareOk {
        self.send_method(
            channel,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                passive: false,
                durable: false,
                exclusive: false,
                auto_delete: false,
                nowait: false,
                arguments: FieldTable::default(),
            })),
        )
        .await;
        match self.expect_method(channel).await {
            AMQPClass::Queue(queue::AMQPMethod::DeclareOk(ok)) => ok,
            other => panic!("expected queue.declare-ok, got {other:?}"),
        }
    }

    /// basic.get (no-ack) on `queue`: the body of the message, or `None` for get-empty.
    pub async fn get(&mut self, channel: u16, queue: &str) -> Option<Vec<u8>> {
        self.send_method(
            channel,
            AMQPClass::Basic(basic::AMQPMethod::Get(basic::Get {
                queue: queue.into(),
                no_ack: true,
            })),
        )
        .await;
        match self.expect_method(channel).await {
            AMQPClass::Basic(basic::AMQPMethod::GetEmpty(_)) => return None,
            AMQPClass::Basic(basic::AMQPMethod::GetOk(_)) => {}
            other => panic!("expected basic.get-ok, got {other:?}"),
        }
        let size = match self.expect_frame().await {
            AMQPFrame::Header(ch, h) if ch == channel => h.body_size as usize,
            other => panic!("expected a content header, got {other:?}"),
        };
        let mut body = Vec::with_capacity(size);
        while body.len() < size {
            match self.expect_frame().await {
                AMQPFrame::Body(ch, b) if ch == channel => body.extend(b),
                other => panic!("expected a content body, got {other:?}"),
            }
        }
        Some(body)
    }

    /// Publishes `body` through the default exchange to `queue` and reads it
    /// back with basic.get: proves `channel` works.
    pub async fn round_trip(&mut self, channel: u16, queue: &str, body: &[u8]) {
        self.declare_queue(channel, queue).await;
        self.send(&publish_frames(channel, "", queue, body)).await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(got) = self.get(channel, queue).await {
                assert_eq!(got, body, "round trip on channel {channel}");
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "published message never reached {queue}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
