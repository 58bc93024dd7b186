//! A lean MQTT client for generating load: our own codec
//! (`tether_protocols::mqtt`) over a tokio `TcpStream`.
//!
//! A general-purpose client library spends a task, a channel hop and an
//! allocation per message; at hundreds of thousands of messages per second
//! that would make the load generator the bottleneck. Here each connection is
//! one task that encodes packets straight into its write buffer, writes many
//! at once, and decodes what it reads in place without copying.
//!
//! Payloads carry their send time ([`crate::latency::stamp`]) so a
//! subscriber in the same process measures publish-to-deliver latency.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tether_protocols::mqtt::{
    self, Connect, Packet, Properties, ProtocolVersion, PubResponse, Publish, QoS, ReasonCode,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};

use crate::{Error, net};

/// Largest packet accepted from the broker.
pub const MAX_PACKET: usize = 16 * 1024 * 1024;

/// How long connecting (TCP and CONNECT/CONNACK) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The MQTT version from its command-line spelling (`3.1.1`/`4` or `5`).
pub fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "3.1.1" | "4" | "311" => Ok(ProtocolVersion::V3_1_1),
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        other => Err(format!("unknown MQTT version {other:?} (use 3.1.1 or 5)")),
    }
}

/// A QoS from `0`, `1` or `2`.
pub fn parse_qos(s: &str) -> Result<QoS, String> {
    match s {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        other => Err(format!("QoS must be 0, 1 or 2, not {other:?}")),
    }
}

/// `user:password` as a pair (`None` without a colon).
pub fn parse_credentials(text: Option<&str>) -> Option<(String, String)> {
    text?
        .split_once(':')
        .map(|(u, p)| (u.to_owned(), p.to_owned()))
}

/// How to open one connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The broker.
    pub addr: SocketAddr,
    /// Local address to connect from (spreads connections over 127.0.0.x so
    /// one source address does not run out of ports).
    pub source: Option<IpAddr>,
    /// Protocol version.
    pub version: ProtocolVersion,
    /// Client identifier.
    pub client_id: String,
    /// User name and password, if the broker wants them.
    pub credentials: Option<(String, String)>,
    /// Keep-alive in seconds; the connection pings at half of it.
    pub keep_alive: u16,
}

/// An open MQTT connection, split into halves so one task can read and
/// write at once with `select!` (both `read_buf` and `write` are
/// cancellation-safe).
pub struct Conn {
    /// Read half.
    pub read: OwnedReadHalf,
    /// Write half.
    pub write: OwnedWriteHalf,
    /// Bytes read and not yet decoded.
    pub rbuf: BytesMut,
    /// Encoded packets not yet written.
    pub wbuf: BytesMut,
    /// The version packets are encoded in.
    pub version: ProtocolVersion,
    /// The broker's receive maximum (MQTT 5), else 65 535.
    pub receive_maximum: u16,
}

impl Conn {
    /// Opens the TCP connection, sends CONNECT and waits for a successful
    /// CONNACK.
    pub async fn connect(opts: &ConnectOptions) -> Result<Conn, Error> {
        tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(opts))
            .await
            .map_err(|_| Error::from(format!("connecting to {} timed out", opts.addr)))?
    }

    async fn connect_inner(opts: &ConnectOptions) -> Result<Conn, Error> {
        let socket = if opts.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(ip) = opts.source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let stream: TcpStream = socket
            .connect(opts.addr)
            .await
            .map_err(|e| Error::from(format!("cannot connect to {}: {e}", opts.addr)))?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        let mut conn = Conn {
            read,
            write,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            version: opts.version,
            receive_maximum: u16::MAX,
        };
        let connect = Connect {
            protocol: opts.version,
            clean_start: true,
            keep_alive: opts.keep_alive,
            client_id: &opts.client_id,
            will: None,
            username: opts.credentials.as_ref().map(|(u, _)| u.as_str()),
            password: opts.credentials.as_ref().map(|(_, p)| p.as_bytes()),
            properties: Properties::new(),
        };
        conn.push(&Packet::Connect(connect))?;
        conn.flush().await?;
        loop {
            if let Some(n) = conn.frame()? {
                let (packet, _) = Packet::decode(&conn.rbuf[..n], conn.version, MAX_PACKET)?;
                let Packet::ConnAck(ack) = packet else {
                    return Err(format!("expected CONNACK, got {:?}", packet.packet_type()).into());
                };
                if ack.code != ReasonCode::SUCCESS {
                    return Err(
                        format!("broker refused the connection: code {:#04x}", ack.code.0).into(),
                    );
                }
                if let Some(max) = ack.properties.receive_maximum {
                    conn.receive_maximum = max;
                }
                conn.rbuf.advance(n);
                return Ok(conn);
            }
            conn.fill().await?;
        }
    }

    /// Encodes `packet` at the end of the write buffer.
    pub fn push(&mut self, packet: &Packet<'_>) -> Result<(), Error> {
        push(&mut self.wbuf, self.version, packet)
    }

    /// Encodes a PUBLISH at the end of the write buffer.
    pub fn push_publish(&mut self, publish: &Publish<'_>) -> Result<(), Error> {
        self.push(&Packet::Publish(*publish))
    }

    /// Queues an acknowledgement (PUBACK, PUBREC, PUBREL or PUBCOMP).
    pub fn push_ack(&mut self, kind: AckKind, packet_id: u16) -> Result<(), Error> {
        let r = PubResponse::new(packet_id);
        let p = match kind {
            AckKind::PubAck => Packet::PubAck(r),
            AckKind::PubRec => Packet::PubRec(r),
            AckKind::PubRel => Packet::PubRel(r),
            AckKind::PubComp => Packet::PubComp(r),
        };
        self.push(&p)
    }

    /// Writes the whole write buffer.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.write.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads more bytes into the read buffer; see [`net::fill`].
    pub async fn fill(&mut self) -> Result<(), Error> {
        net::fill(&mut self.read, &mut self.rbuf).await
    }

    /// The length of the complete frame at the front of the read buffer, if
    /// there is one.
    pub fn frame(&self) -> Result<Option<usize>, Error> {
        Ok(mqtt::frame_len(&self.rbuf, MAX_PACKET)?.filter(|&n| n <= self.rbuf.len()))
    }

    /// Sends DISCONNECT and closes, ignoring errors (the run is over).
    pub async fn close(mut self) {
        self.wbuf.clear();
        if self
            .push(&Packet::Disconnect(mqtt::Disconnect::default()))
            .is_ok()
        {
            let _ = tokio::time::timeout(Duration::from_secs(2), self.flush()).await;
        }
        let _ = self.write.shutdown().await;
    }
}

/// Encodes `packet` in `version` at the end of `wbuf` (also used by the
/// null sink, which answers in the client's version).
pub fn push(
    wbuf: &mut BytesMut,
    version: ProtocolVersion,
    packet: &Packet<'_>,
) -> Result<(), Error> {
    let len = packet.encoded_len(version)?;
    let start = wbuf.len();
    wbuf.resize(start + len, 0);
    packet.encode(version, &mut wbuf[start..])?;
    Ok(())
}

/// The four acknowledgement packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// PUBACK (QoS 1).
    PubAck,
    /// PUBREC (QoS 2, first reply).
    PubRec,
    /// PUBREL (QoS 2, publisher's second packet).
    PubRel,
    /// PUBCOMP (QoS 2, last reply).
    PubComp,
}

/// An error for a DISCONNECT the broker sent.
pub fn disconnected(reason: ReasonCode) -> Error {
    format!("the broker sent DISCONNECT (reason {:#04x})", reason.0).into()
}
