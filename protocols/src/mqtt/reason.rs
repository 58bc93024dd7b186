//! MQTT 5 reason codes, MQTT 3 CONNACK return codes, and the mapping between them.
//!
//! A [`ReasonCode`] is a plain byte with named constants for every code the
//! MQTT 5 specification defines (§2.4). Which codes a packet type may carry is
//! answered by [`ReasonCode::is_valid_for`].

use core::fmt;

use super::packet::PacketType;

/// An MQTT 5 reason code (or, in an MQTT 3 CONNACK, the return code in `.0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReasonCode(pub u8);

impl ReasonCode {
    /// 0x00 Success (CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK, AUTH).
    pub const SUCCESS: Self = Self(0x00);
    /// 0x00 Normal disconnection (DISCONNECT).
    pub const NORMAL_DISCONNECTION: Self = Self(0x00);
    /// 0x00 Granted QoS 0 (SUBACK).
    pub const GRANTED_QOS_0: Self = Self(0x00);
    /// 0x01 Granted QoS 1 (SUBACK).
    pub const GRANTED_QOS_1: Self = Self(0x01);
    /// 0x02 Granted QoS 2 (SUBACK).
    pub const GRANTED_QOS_2: Self = Self(0x02);
    /// 0x04 Disconnect with Will Message (DISCONNECT).
    pub const DISCONNECT_WITH_WILL: Self = Self(0x04);
    /// 0x10 No matching subscribers (PUBACK, PUBREC).
    pub const NO_MATCHING_SUBSCRIBERS: Self = Self(0x10);
    /// 0x11 No subscription existed (UNSUBACK).
    pub const NO_SUBSCRIPTION_EXISTED: Self = Self(0x11);
    /// 0x18 Continue authentication (AUTH).
    pub const CONTINUE_AUTHENTICATION: Self = Self(0x18);
    /// 0x19 Re-authenticate (AUTH).
    pub const RE_AUTHENTICATE: Self = Self(0x19);
    /// 0x80 Unspecified error.
    pub const UNSPECIFIED_ERROR: Self = Self(0x80);
    /// 0x81 Malformed Packet.
    pub const MALFORMED_PACKET: Self = Self(0x81);
    /// 0x82 Protocol Error.
    pub const PROTOCOL_ERROR: Self = Self(0x82);
    /// 0x83 Implementation specific error.
    pub const IMPLEMENTATION_SPECIFIC_ERROR: Self = Self(0x83);
    /// 0x84 Unsupported Protocol Version (CONNACK).
    pub const UNSUPPORTED_PROTOCOL_VERSION: Self = Self(0x84);
    /// 0x85 Client Identifier not valid (CONNACK).
    pub const CLIENT_IDENTIFIER_NOT_VALID: Self = Self(0x85);
    /// 0x86 Bad User Name or Password (CONNACK).
    pub const BAD_USER_NAME_OR_PASSWORD: Self = Self(0x86);
    /// 0x87 Not authorized.
    pub const NOT_AUTHORIZED: Self = Self(0x87);
    /// 0x88 Server unavailable (CONNACK).
    pub const SERVER_UNAVAILABLE: Self = Self(0x88);
    /// 0x89 Server busy.
    pub const SERVER_BUSY: Self = Self(0x89);
    /// 0x8A Banned (CONNACK).
    pub const BANNED: Self = Self(0x8A);
    /// 0x8B Server shutting down (DISCONNECT).
    pub const SERVER_SHUTTING_DOWN: Self = Self(0x8B);
    /// 0x8C Bad authentication method.
    pub const BAD_AUTHENTICATION_METHOD: Self = Self(0x8C);
    /// 0x8D Keep Alive timeout (DISCONNECT).
    pub const KEEP_ALIVE_TIMEOUT: Self = Self(0x8D);
    /// 0x8E Session taken over (DISCONNECT).
    pub const SESSION_TAKEN_OVER: Self = Self(0x8E);
    /// 0x8F Topic Filter invalid.
    pub const TOPIC_FILTER_INVALID: Self = Self(0x8F);
    /// 0x90 Topic Name invalid.
    pub const TOPIC_NAME_INVALID: Self = Self(0x90);
    /// 0x91 Packet Identifier in use.
    pub const PACKET_IDENTIFIER_IN_USE: Self = Self(0x91);
    /// 0x92 Packet Identifier not found (PUBREL, PUBCOMP).
    pub const PACKET_IDENTIFIER_NOT_FOUND: Self = Self(0x92);
    /// 0x93 Receive Maximum exceeded (DISCONNECT).
    pub const RECEIVE_MAXIMUM_EXCEEDED: Self = Self(0x93);
    /// 0x94 Topic Alias invalid (DISCONNECT).
    pub const TOPIC_ALIAS_INVALID: Self = Self(0x94);
    /// 0x95 Packet too large.
    pub const PACKET_TOO_LARGE: Self = Self(0x95);
    /// 0x96 Message rate too high (DISCONNECT).
    pub const MESSAGE_RATE_TOO_HIGH: Self = Self(0x96);
    /// 0x97 Quota exceeded.
    pub const QUOTA_EXCEEDED: Self = Self(0x97);
    /// 0x98 Administrative action (DISCONNECT).
    pub const ADMINISTRATIVE_ACTION: Self = Self(0x98);
    /// 0x99 Payload format invalid.
    pub const PAYLOAD_FORMAT_INVALID: Self = Self(0x99);
    /// 0x9A Retain not supported.
    pub const RETAIN_NOT_SUPPORTED: Self = Self(0x9A);
    /// 0x9B QoS not supported.
    pub const QOS_NOT_SUPPORTED: Self = Self(0x9B);
    /// 0x9C Use another server.
    pub const USE_ANOTHER_SERVER: Self = Self(0x9C);
    /// 0x9D Server moved.
    pub const SERVER_MOVED: Self = Self(0x9D);
    /// 0x9E Shared Subscriptions not supported.
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0x9E);
    /// 0x9F Connection rate exceeded.
    pub const CONNECTION_RATE_EXCEEDED: Self = Self(0x9F);
    /// 0xA0 Maximum connect time (DISCONNECT).
    pub const MAXIMUM_CONNECT_TIME: Self = Self(0xA0);
    /// 0xA1 Subscription Identifiers not supported.
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: Self = Self(0xA1);
    /// 0xA2 Wildcard Subscriptions not supported.
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Self = Self(0xA2);

    /// Whether this code reports a failure (values 0x80 and above, §2.4).
    pub const fn is_error(self) -> bool {
        self.0 >= 0x80
    }

    /// Whether an MQTT 5 packet of type `packet` may carry this reason code
    /// (the table in §2.4). For SUBACK this checks one entry of the payload;
    /// packet types without a reason code (CONNECT, PUBLISH, SUBSCRIBE,
    /// UNSUBSCRIBE, PINGREQ, PINGRESP) accept none.
    pub const fn is_valid_for(self, packet: PacketType) -> bool {
        use PacketType as P;
        match (self.0, packet) {
            (0x00, P::ConnAck | P::PubAck | P::PubRec | P::PubRel | P::PubComp)
            | (0x00, P::UnsubAck | P::Auth | P::Disconnect | P::SubAck)
            | (0x01 | 0x02, P::SubAck)
            | (0x04, P::Disconnect)
            | (0x10, P::PubAck | P::PubRec)
            | (0x11, P::UnsubAck)
            | (0x18 | 0x19, P::Auth) => true,
            // Errors shared by CONNACK, PUBACK, PUBREC, SUBACK, UNSUBACK, DISCONNECT.
            (0x80 | 0x83 | 0x87, P::ConnAck | P::PubAck | P::PubRec | P::SubAck)
            | (0x80 | 0x83 | 0x87, P::UnsubAck | P::Disconnect) => true,
            (0x81 | 0x82, P::ConnAck | P::Disconnect) => true,
            (0x84 | 0x85 | 0x86 | 0x88 | 0x8A, P::ConnAck) => true,
            (0x89 | 0x8C, P::ConnAck | P::Disconnect) => true,
            (0x8B | 0x8D | 0x8E, P::Disconnect) => true,
            (0x8F, P::SubAck | P::UnsubAck | P::Disconnect) => true,
            (0x90, P::ConnAck | P::PubAck | P::PubRec | P::Disconnect) => true,
            (0x91, P::PubAck | P::PubRec | P::SubAck | P::UnsubAck) => true,
            (0x92, P::PubRel | P::PubComp) => true,
            (0x93 | 0x94 | 0x96 | 0x98 | 0xA0, P::Disconnect) => true,
            (0x95, P::ConnAck | P::Disconnect) => true,
            (0x97, P::ConnAck | P::PubAck | P::PubRec | P::SubAck | P::Disconnect) => true,
            (0x99, P::ConnAck | P::PubAck | P::PubRec | P::Disconnect) => true,
            (0x9A | 0x9B | 0x9C | 0x9D | 0x9F, P::ConnAck | P::Disconnect) => true,
            (0x9E | 0xA1 | 0xA2, P::SubAck | P::Disconnect) => true,
            _ => false,
        }
    }

    /// The closest MQTT 3 CONNACK return code for this MQTT 5 CONNACK reason.
    ///
    /// MQTT 3 has no code for a malformed or otherwise broken CONNECT: a v3
    /// server closes the connection without a CONNACK then. For such codes
    /// (and any other without a v3 counterpart) this returns
    /// [`ConnectReturnCode::ServerUnavailable`].
    pub const fn to_v3_connect_return_code(self) -> ConnectReturnCode {
        match self {
            Self::SUCCESS => ConnectReturnCode::Accepted,
            Self::UNSUPPORTED_PROTOCOL_VERSION => ConnectReturnCode::UnacceptableProtocolVersion,
            Self::CLIENT_IDENTIFIER_NOT_VALID => ConnectReturnCode::IdentifierRejected,
            Self::BAD_USER_NAME_OR_PASSWORD | Self::BAD_AUTHENTICATION_METHOD => {
                ConnectReturnCode::BadUserNameOrPassword
            }
            Self::NOT_AUTHORIZED | Self::BANNED => ConnectReturnCode::NotAuthorized,
            _ => ConnectReturnCode::ServerUnavailable,
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:02X}", self.0)
    }
}

/// MQTT 3.1 / 3.1.1 CONNACK return codes (§3.2.2.3 of 3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    /// 0: Connection accepted.
    Accepted = 0,
    /// 1: The server does not support the requested protocol level.
    UnacceptableProtocolVersion = 1,
    /// 2: The client identifier is not allowed.
    IdentifierRejected = 2,
    /// 3: The MQTT service is unavailable.
    ServerUnavailable = 3,
    /// 4: The user name or password is malformed or wrong.
    BadUserNameOrPassword = 4,
    /// 5: The client is not authorized to connect.
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// Parses a return code byte; `None` for the reserved values 6..=255.
    pub const fn from_u8(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNameOrPassword,
            5 => Self::NotAuthorized,
            _ => return None,
        })
    }

    /// The return code as a [`ReasonCode`] holding the v3 byte (what
    /// [`ConnAck::code`](super::ConnAck::code) carries in MQTT 3).
    pub const fn as_v3_code(self) -> ReasonCode {
        ReasonCode(self as u8)
    }

    /// The MQTT 5 reason code with the same meaning.
    pub const fn to_v5_reason_code(self) -> ReasonCode {
        match self {
            Self::Accepted => ReasonCode::SUCCESS,
            Self::UnacceptableProtocolVersion => ReasonCode::UNSUPPORTED_PROTOCOL_VERSION,
            Self::IdentifierRejected => ReasonCode::CLIENT_IDENTIFIER_NOT_VALID,
            Self::ServerUnavailable => ReasonCode::SERVER_UNAVAILABLE,
            Self::BadUserNameOrPassword => ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            Self::NotAuthorized => ReasonCode::NOT_AUTHORIZED,
        }
    }
}

/// Whether `code` may appear in an MQTT 3 SUBACK (0, 1, 2 or 0x80 Failure).
pub(crate) const fn is_valid_v3_suback_code(code: u8) -> bool {
    matches!(code, 0 | 1 | 2 | 0x80)
}
