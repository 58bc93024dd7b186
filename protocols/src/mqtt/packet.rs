//! The [`Packet`] enum and the small types every packet shares: protocol
//! version, QoS and packet type.

use super::encode::{self, Encode};
use super::error::{DecodeError, EncodeError};
use super::{
    Auth, ConnAck, Connect, Disconnect, PubResponse, Publish, SubAck, Subscribe, UnsubAck,
    Unsubscribe,
};

/// Largest Remaining Length a fixed header can express (four bytes of 7 bits).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

/// The MQTT protocol version spoken on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol level 3, protocol name `MQIsdp`.
    V3_1,
    /// MQTT 3.1.1: protocol level 4, protocol name `MQTT`.
    V3_1_1,
    /// MQTT 5.0: protocol level 5, protocol name `MQTT`.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub const fn level(self) -> u8 {
        match self {
            Self::V3_1 => 3,
            Self::V3_1_1 => 4,
            Self::V5 => 5,
        }
    }

    /// The protocol name of CONNECT.
    pub const fn protocol_name(self) -> &'static str {
        match self {
            Self::V3_1 => "MQIsdp",
            Self::V3_1_1 | Self::V5 => "MQTT",
        }
    }

    /// The version with this protocol level, if we speak it.
    pub const fn from_level(level: u8) -> Option<Self> {
        match level {
            3 => Some(Self::V3_1),
            4 => Some(Self::V3_1_1),
            5 => Some(Self::V5),
            _ => None,
        }
    }

    /// Whether this is MQTT 5 (properties, reason codes, AUTH).
    pub const fn is_v5(self) -> bool {
        matches!(self, Self::V5)
    }
}

/// Quality of service of a message or subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// QoS 0: delivered at most once, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// QoS 1: delivered at least once (PUBACK).
    AtLeastOnce = 1,
    /// QoS 2: delivered exactly once (PUBREC, PUBREL, PUBCOMP).
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS with this value; `None` for 3 and above.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }

    /// The numeric value (0, 1 or 2).
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

/// The control packet type, the high nibble of the first fixed header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// 1: client request to connect.
    Connect = 1,
    /// 2: connect acknowledgement.
    ConnAck = 2,
    /// 3: publish message.
    Publish = 3,
    /// 4: publish acknowledgement (QoS 1).
    PubAck = 4,
    /// 5: publish received (QoS 2, part 1).
    PubRec = 5,
    /// 6: publish release (QoS 2, part 2).
    PubRel = 6,
    /// 7: publish complete (QoS 2, part 3).
    PubComp = 7,
    /// 8: subscribe request.
    Subscribe = 8,
    /// 9: subscribe acknowledgement.
    SubAck = 9,
    /// 10: unsubscribe request.
    Unsubscribe = 10,
    /// 11: unsubscribe acknowledgement.
    UnsubAck = 11,
    /// 12: ping request.
    PingReq = 12,
    /// 13: ping response.
    PingResp = 13,
    /// 14: disconnect notification.
    Disconnect = 14,
    /// 15: authentication exchange (MQTT 5 only).
    Auth = 15,
}

impl PacketType {
    /// The packet type with this number; `None` for the reserved 0 and above 15.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Connect,
            2 => Self::ConnAck,
            3 => Self::Publish,
            4 => Self::PubAck,
            5 => Self::PubRec,
            6 => Self::PubRel,
            7 => Self::PubComp,
            8 => Self::Subscribe,
            9 => Self::SubAck,
            10 => Self::Unsubscribe,
            11 => Self::UnsubAck,
            12 => Self::PingReq,
            13 => Self::PingResp,
            14 => Self::Disconnect,
            15 => Self::Auth,
            _ => return None,
        })
    }

    /// The fixed header flags this type must carry (PUBLISH's flags vary and
    /// are reported as 0 here).
    pub const fn required_flags(self) -> u8 {
        match self {
            Self::PubRel | Self::Subscribe | Self::Unsubscribe => 0b0010,
            _ => 0,
        }
    }

    /// The first fixed header byte for this type with its required flags.
    pub(crate) const fn header_byte(self) -> u8 {
        ((self as u8) << 4) | self.required_flags()
    }
}

/// One MQTT control packet, borrowing its strings and bytes from the buffer
/// it was decoded from (or from the caller who built it).
///
/// CONNECT is the largest variant (two property sets); boxing it would need an
/// allocator, and a packet is a short-lived value, so the size is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Packet<'a> {
    /// CONNECT.
    Connect(Connect<'a>),
    /// CONNACK.
    ConnAck(ConnAck<'a>),
    /// PUBLISH.
    Publish(Publish<'a>),
    /// PUBACK.
    PubAck(PubResponse<'a>),
    /// PUBREC.
    PubRec(PubResponse<'a>),
    /// PUBREL.
    PubRel(PubResponse<'a>),
    /// PUBCOMP.
    PubComp(PubResponse<'a>),
    /// SUBSCRIBE.
    Subscribe(Subscribe<'a>),
    /// SUBACK.
    SubAck(SubAck<'a>),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe<'a>),
    /// UNSUBACK.
    UnsubAck(UnsubAck<'a>),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect<'a>),
    /// AUTH (MQTT 5 only).
    Auth(Auth<'a>),
}

/// PINGREQ / PINGRESP: a fixed header with remaining length 0.
struct Empty(PacketType);

impl Encode for Empty {
    fn header_byte(&self) -> u8 {
        self.0.header_byte()
    }
    fn body_len(&self, _: ProtocolVersion) -> Result<usize, EncodeError> {
        Ok(0)
    }
    fn write_body(
        &self,
        _: ProtocolVersion,
        _: &mut encode::Writer<'_>,
    ) -> Result<(), EncodeError> {
        Ok(())
    }
}

impl<'a> Packet<'a> {
    /// Decodes one packet from the front of `buf`; see [`decode`](super::decode).
    pub fn decode(
        buf: &'a [u8],
        version: ProtocolVersion,
        max_packet_size: usize,
    ) -> Result<(Self, usize), DecodeError> {
        super::decode::decode(buf, version, max_packet_size)
    }

    /// The control packet type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Self::Connect(_) => PacketType::Connect,
            Self::ConnAck(_) => PacketType::ConnAck,
            Self::Publish(_) => PacketType::Publish,
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubRel(_) => PacketType::PubRel,
            Self::PubComp(_) => PacketType::PubComp,
            Self::Subscribe(_) => PacketType::Subscribe,
            Self::SubAck(_) => PacketType::SubAck,
            Self::Unsubscribe(_) => PacketType::Unsubscribe,
            Self::UnsubAck(_) => PacketType::UnsubAck,
            Self::PingReq => PacketType::PingReq,
            Self::PingResp => PacketType::PingResp,
            Self::Disconnect(_) => PacketType::Disconnect,
            Self::Auth(_) => PacketType::Auth,
        }
    }

    /// Runs `f` on the packet as an [`Encode`] implementation.
    fn with_encoder<R>(&self, f: impl FnOnce(&dyn Encode) -> R) -> R {
        match self {
            Self::Connect(p) => f(p),
            Self::ConnAck(p) => f(p),
            Self::Publish(p) => f(p),
            Self::PubAck(p) => f(&p.as_kind(PacketType::PubAck)),
            Self::PubRec(p) => f(&p.as_kind(PacketType::PubRec)),
            Self::PubRel(p) => f(&p.as_kind(PacketType::PubRel)),
            Self::PubComp(p) => f(&p.as_kind(PacketType::PubComp)),
            Self::Subscribe(p) => f(p),
            Self::SubAck(p) => f(p),
            Self::Unsubscribe(p) => f(p),
            Self::UnsubAck(p) => f(p),
            Self::PingReq => f(&Empty(PacketType::PingReq)),
            Self::PingResp => f(&Empty(PacketType::PingResp)),
            Self::Disconnect(p) => f(p),
            Self::Auth(p) => f(p),
        }
    }

    /// Exact number of bytes [`encode`](Self::encode) writes for `version`,
    /// after checking that the packet is encodable.
    ///
    /// CONNECT is encoded in its own [`Connect::protocol`] version whatever
    /// `version` says. Before MQTT 5, properties and other v5-only fields
    /// (reason codes of acks and DISCONNECT, v5 subscription options) are
    /// ignored; AUTH is refused.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        self.with_encoder(|p| encode::encoded_len(p, version))
    }

    /// Encodes the packet at the start of `buf` and returns the number of
    /// bytes written; [`EncodeError::BufferTooSmall`] if `buf` is too short.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        self.with_encoder(|p| encode::encode(p, version, buf))
    }
}
