//! A scripted fake MQTT server for host tests of the client core: it encodes
//! the server's packets with the shared codec and decodes what the client
//! wrote, so every test reads as a conversation.

#![allow(dead_code)]

use tether_firmware::client::{Client, Config, ConnectionError, Event, State};
use tether_firmware::protocols::mqtt::{
    self, ConnAck, Disconnect, Packet, PacketType, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, SubAck,
};

/// Readings the tests publish.
pub const TOPIC: &str = "sensors/d1/telemetry";
/// Commands the tests subscribe to.
pub const CMD: &str = "devices/d1/cmd";

/// What the client sent, decoded and owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Connect {
        client_id: String,
        clean_start: bool,
        keep_alive: u16,
        username: Option<String>,
        password: Option<Vec<u8>>,
        will: Option<(String, Vec<u8>, QoS, bool)>,
        protocol: ProtocolVersion,
        session_expiry: Option<u32>,
        receive_maximum: Option<u16>,
        maximum_packet_size: Option<u32>,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        dup: bool,
        retain: bool,
        packet_id: Option<u16>,
    },
    PubAck(u16),
    Subscribe {
        packet_id: u16,
        filters: Vec<(String, QoS)>,
    },
    PingReq,
    Disconnect,
    Other(PacketType),
}

/// Decodes every packet in `bytes` (which must hold whole packets).
pub fn decode_all(mut bytes: &[u8], version: ProtocolVersion) -> Vec<Sent> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let (packet, len) =
            mqtt::decode(bytes, version, usize::MAX).expect("client wrote a valid packet");
        out.push(match packet {
            Packet::Connect(c) => Sent::Connect {
                client_id: c.client_id.to_owned(),
                clean_start: c.clean_start,
                keep_alive: c.keep_alive,
                username: c.username.map(str::to_owned),
                password: c.password.map(<[u8]>::to_vec),
                will: c
                    .will
                    .map(|w| (w.topic.to_owned(), w.payload.to_vec(), w.qos, w.retain)),
                protocol: c.protocol,
                session_expiry: c.properties.session_expiry_interval,
                receive_maximum: c.properties.receive_maximum,
                maximum_packet_size: c.properties.maximum_packet_size,
            },
            Packet::Publish(p) => Sent::Publish {
                topic: p.topic.to_owned(),
                payload: p.payload.to_vec(),
                qos: p.qos,
                dup: p.dup,
                retain: p.retain,
                packet_id: p.packet_id,
            },
            Packet::PubAck(a) => Sent::PubAck(a.packet_id),
            Packet::Subscribe(s) => Sent::Subscribe {
                packet_id: s.packet_id,
                filters: s
                    .filters
                    .iter()
                    .map(|(f, o)| (f.to_owned(), o.qos))
                    .collect(),
            },
            Packet::PingReq => Sent::PingReq,
            Packet::Disconnect(_) => Sent::Disconnect,
            other => Sent::Other(other.packet_type()),
        });
        bytes = &bytes[len..];
    }
    out
}

/// Encodes a server packet.
pub fn encode(packet: Packet<'_>, version: ProtocolVersion) -> Vec<u8> {
    let mut buf = vec![0; packet.encoded_len(version).expect("encodable")];
    packet.encode(version, &mut buf).expect("encode");
    buf
}

pub fn connack(session_present: bool, code: u8) -> Vec<u8> {
    encode(
        Packet::ConnAck(ConnAck {
            session_present,
            code: ReasonCode(code),
            properties: mqtt::Properties::new(),
        }),
        ProtocolVersion::V3_1_1,
    )
}

pub fn puback(packet_id: u16) -> Vec<u8> {
    encode(
        Packet::PubAck(PubResponse::new(packet_id)),
        ProtocolVersion::V3_1_1,
    )
}

pub fn suback(packet_id: u16, code: u8) -> Vec<u8> {
    encode(
        Packet::SubAck(SubAck {
            packet_id,
            properties: mqtt::Properties::new(),
            return_codes: &[code],
        }),
        ProtocolVersion::V3_1_1,
    )
}

pub fn pingresp() -> Vec<u8> {
    encode(Packet::PingResp, ProtocolVersion::V3_1_1)
}

pub fn publish(topic: &str, payload: &[u8], qos: QoS, packet_id: Option<u16>) -> Vec<u8> {
    encode(
        Packet::Publish(Publish {
            dup: false,
            qos,
            retain: false,
            topic,
            packet_id,
            properties: mqtt::Properties::new(),
            payload,
        }),
        ProtocolVersion::V3_1_1,
    )
}

pub fn server_disconnect(version: ProtocolVersion, reason: u8) -> Vec<u8> {
    encode(
        Packet::Disconnect(Disconnect {
            reason: ReasonCode(reason),
            properties: mqtt::Properties::new(),
        }),
        version,
    )
}

/// A client under test with its buffers and a clock the test moves.
pub struct Harness<const N: usize, const M: usize> {
    pub client: Client<'static, N, M>,
    pub now: u64,
    tx: Vec<u8>,
    stash: Vec<Sent>,
}

impl<const N: usize, const M: usize> Harness<N, M> {
    pub fn new(config: Config<'static>) -> Self {
        let rx: &'static mut [u8] = Box::leak(vec![0u8; 256].into_boxed_slice());
        Self {
            client: Client::new(config, rx),
            now: 1_000,
            tx: vec![0; 512],
            stash: Vec::new(),
        }
    }

    /// Everything the client has sent since the last call (including what
    /// `feed` had to transmit to relieve back-pressure), decoded.
    pub fn sent(&mut self) -> Vec<Sent> {
        let mut all = std::mem::take(&mut self.stash);
        all.extend(self.transmit());
        all
    }

    fn transmit(&mut self) -> Vec<Sent> {
        let version = self.client.protocol();
        let mut all = Vec::new();
        loop {
            let n = self
                .client
                .poll_transmit(self.now, &mut self.tx)
                .expect("transmit");
            if n == 0 {
                return all;
            }
            all.extend(decode_all(&self.tx[..n], version));
        }
    }

    /// Feeds bytes from the server and collects the events, as text. When
    /// the client stops taking input until its acknowledgements go out, it
    /// transmits them (kept for the next `sent`), as a driver would.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, ConnectionError> {
        let mut rest = bytes;
        let mut events = Vec::new();
        loop {
            let n = self.client.handle_input(rest);
            rest = &rest[n..];
            let before = events.len();
            while let Some(e) = self.client.poll_event(self.now)? {
                events.push(describe(&e));
            }
            if n == 0 && events.len() == before {
                let sent = self.transmit();
                if sent.is_empty() {
                    assert!(rest.is_empty(), "the client stopped taking input");
                    return Ok(events);
                }
                self.stash.extend(sent);
            }
        }
    }

    /// Opens the transport, checks the CONNECT and accepts it.
    pub fn connect(&mut self, session_present: bool) -> Vec<Sent> {
        self.client.on_transport_open(self.now);
        let sent = self.sent();
        assert!(
            matches!(sent.first(), Some(Sent::Connect { .. })),
            "{sent:?}"
        );
        let events = self.feed(&connack(session_present, 0)).expect("accepted");
        assert_eq!(events, [format!("connected sp={session_present}")]);
        assert_eq!(self.client.state(), State::Connected);
        self.sent()
    }

    pub fn advance(&mut self, ms: u64) {
        self.now += ms;
    }
}

/// An event as text, so tests can compare lists of them.
pub fn describe(e: &Event<'_>) -> String {
    match e {
        Event::Connected { session_present } => format!("connected sp={session_present}"),
        Event::Subscribed { granted } => format!("subscribed {granted:?}"),
        Event::Delivered { packet_id } => format!("delivered {packet_id}"),
        Event::Rejected { packet_id, reason } => format!("rejected {packet_id} {reason:#x}"),
        Event::Command(c) => format!(
            "command {} {} {:?}",
            c.topic,
            String::from_utf8_lossy(c.payload),
            c.qos
        ),
    }
}

/// The (topic-less) payloads and flags of the PUBLISH packets in `sent`.
pub fn publishes(sent: &[Sent]) -> Vec<(String, bool, Option<u16>)> {
    sent.iter()
        .filter_map(|s| match s {
            Sent::Publish {
                payload,
                dup,
                packet_id,
                ..
            } => Some((
                String::from_utf8_lossy(payload).into_owned(),
                *dup,
                *packet_id,
            )),
            _ => None,
        })
        .collect()
}
