//! A raw-TCP MQTT client for hand-built and deliberately broken packets.
//!
//! It writes exactly the bytes a test gives it and reports exactly what the
//! gateway sends back: whole frames, or the end of the connection. Packets are
//! built and read with our own codec (`tether_protocols::mqtt`); a test that
//! needs a broken packet encodes a good one and corrupts its bytes.
//!
//! Use it where a real client library would refuse to send something, hides
//! what arrived on the wire, or cannot be told to go silent.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use tether_protocols::mqtt::{
    ConnAck, Connect, Disconnect, Packet, PacketType, Properties, ProtocolVersion, PubResponse,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeFilters,
    SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeFilters, Will,
};

/// Largest frame the client accepts from the gateway.
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Encodes `packet` for `version` (CONNECT uses its own version).
pub fn encode(version: ProtocolVersion, packet: &Packet<'_>) -> Vec<u8> {
    let len = packet
        .encoded_len(version)
        .unwrap_or_else(|e| panic!("cannot encode {packet:?}: {e}"));
    let mut buf = vec![0; len];
    packet.encode(version, &mut buf).expect("encode");
    buf
}

/// A CONNECT for `client_id`: clean start, keepalive 30 s, no will, no credentials.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect<'_> {
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        client_id,
        will: None,
        username: None,
        password: None,
        properties: Properties::new(),
    }
}

/// A PUBLISH without properties; `packet_id` is 1 for QoS 1 and 2.
pub fn publish_packet<'a>(topic: &'a str, qos: QoS, payload: &'a [u8]) -> Publish<'a> {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic,
        packet_id: (qos != QoS::AtMostOnce).then_some(1),
        properties: Properties::new(),
        payload,
    }
}

/// One frame received from the gateway: fixed header and body.
#[derive(Debug, Clone)]
pub struct Frame(pub Bytes);

impl Frame {
    /// The packet type nibble.
    pub fn packet_type(&self) -> u8 {
        self.0[0] >> 4
    }

    /// Decodes the frame; panics if the gateway sent something malformed.
    pub fn packet(&self, version: ProtocolVersion) -> Packet<'_> {
        match Packet::decode(&self.0, version, MAX_FRAME) {
            Ok((p, _)) => p,
            Err(e) => panic!(
                "gateway sent a malformed packet ({e}): {:02x?}",
                &self.0[..]
            ),
        }
    }
}

/// What the next read brought.
#[derive(Debug)]
pub enum Received {
    /// A complete frame.
    Frame(Frame),
    /// The gateway closed the connection (EOF or reset).
    Closed,
    /// Nothing within the wait.
    Timeout,
}

/// A TCP connection speaking MQTT by hand.
pub struct RawClient {
    stream: TcpStream,
    rbuf: BytesMut,
    /// The version used to encode and decode packets after CONNECT.
    pub version: ProtocolVersion,
    /// Our end of the connection: the `peer` the gateway logs.
    pub local: SocketAddr,
}

impl RawClient {
    /// Opens a TCP connection and sends nothing.
    pub async fn tcp(addr: SocketAddr, version: ProtocolVersion) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        stream.set_nodelay(true).expect("nodelay");
        let local = stream.local_addr().expect("local addr");
        RawClient {
            stream,
            rbuf: BytesMut::new(),
            version,
            local,
        }
    }

    /// Sends `connect` and returns the CONNACK frame (whatever its code).
    pub async fn connect_with(addr: SocketAddr, connect: &Connect<'_>) -> (RawClient, Frame) {
        let mut c = RawClient::tcp(addr, connect.protocol).await;
        c.send_packet(&Packet::Connect(*connect)).await;
        let frame = c.expect_frame(super::mqtt::WAIT).await;
        assert_eq!(
            frame.packet_type(),
            PacketType::ConnAck as u8,
            "expected CONNACK, got {frame:?}"
        );
        (c, frame)
    }

    /// Connects as `client_id` (clean start, keepalive 30 s) and asserts success.
    pub async fn connect(addr: SocketAddr, version: ProtocolVersion, client_id: &str) -> RawClient {
        let (c, frame) = RawClient::connect_with(addr, &connect_packet(version, client_id)).await;
        match frame.packet(version) {
            Packet::ConnAck(a) => assert_eq!(a.code, ReasonCode::SUCCESS, "refused: {a:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        c
    }

    /// Writes raw bytes.
    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Writes raw bytes, ignoring a connection the gateway already closed.
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Encodes and writes one packet.
    pub async fn send_packet(&mut self, packet: &Packet<'_>) {
        let bytes = encode(self.version, packet);
        self.send(&bytes).await;
    }

    /// The next frame, the end of the connection, or a timeout.
    pub async fn recv(&mut self, wait: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tether_protocols::mqtt::frame_len(&self.rbuf, MAX_FRAME) {
                Ok(Some(total)) if self.rbuf.len() >= total => {
                    return Received::Frame(Frame(self.rbuf.split_to(total).freeze()));
                }
                Ok(_) => {}
                Err(e) => panic!(
                    "gateway sent a bad fixed header ({e}): {:02x?}",
                    &self.rbuf[..]
                ),
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

    /// The next frame; panics on close or timeout.
    pub async fn expect_frame(&mut self, wait: Duration) -> Frame {
        match self.recv(wait).await {
            Received::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next frame, skipping PINGRESP, that is of type `kind`; panics otherwise.
    pub async fn expect_type(&mut self, kind: PacketType, wait: Duration) -> Frame {
        loop {
            let f = self.expect_frame(wait).await;
            if f.packet_type() == PacketType::PingResp as u8 && kind != PacketType::PingResp {
                continue;
            }
            assert_eq!(
                f.packet_type(),
                kind as u8,
                "expected {kind:?}, got {:?}",
                f.packet(self.version)
            );
            return f;
        }
    }

    /// Expects the next frame to be an MQTT 5 DISCONNECT; returns its reason code
    /// and reason string.
    pub async fn expect_disconnect(&mut self, wait: Duration) -> (u8, Option<String>) {
        let f = self.expect_frame(wait).await;
        match f.packet(ProtocolVersion::V5) {
            Packet::Disconnect(d) => (d.reason.0, d.properties.reason_string.map(str::to_owned)),
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }

    /// Expects the gateway to close the connection within `wait`, with no
    /// further frame before it.
    pub async fn expect_closed(&mut self, wait: Duration) {
        match self.recv(wait).await {
            Received::Closed => {}
            other => panic!("expected the connection to be closed, got {other:?}"),
        }
    }

    /// Asserts nothing arrives (and the connection stays open) for `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) {
        match self.recv(wait).await {
            Received::Timeout => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// Subscribes to one filter with `options` and returns the SUBACK codes.
    pub async fn subscribe(&mut self, filter: &str, options: SubscriptionOptions) -> Vec<u8> {
        let filters = [(filter, options)];
        self.send_packet(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::new(),
            filters: SubscribeFilters::Slice(&filters),
        }))
        .await;
        let f = self
            .expect_type(PacketType::SubAck, super::mqtt::WAIT)
            .await;
        match f.packet(self.version) {
            Packet::SubAck(s) => s.return_codes.to_vec(),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends a PUBLISH.
    pub async fn publish(&mut self, publish: Publish<'_>) {
        self.send_packet(&Packet::Publish(publish)).await;
    }

    /// Sends a PUBACK for `packet_id`.
    pub async fn puback(&mut self, packet_id: u16) {
        self.send_packet(&Packet::PubAck(PubResponse {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::new(),
        }))
        .await;
    }

    /// Sends DISCONNECT with `reason` (v5) and closes our side.
    pub async fn disconnect(mut self, reason: ReasonCode) {
        self.send_packet(&Packet::Disconnect(Disconnect {
            reason,
            properties: Properties::new(),
        }))
        .await;
        let _ = self.stream.shutdown().await;
    }
}
