//! Decode and encode errors of the MQTT codec.
//!
//! Every rule the decoder enforces has its own [`DecodeError`] variant, so a
//! server can log exactly what a client got wrong, and
//! [`DecodeError::reason_code`] says which MQTT 5 reason code to put in the
//! DISCONNECT (or CONNACK) it sends before closing the connection.

use core::fmt;
use core::num::NonZeroUsize;

use super::reason::ReasonCode;

/// Why bytes received from the network are not a valid MQTT packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// The buffer ends before the packet does: `needed` more bytes are required
    /// (a lower bound while the fixed header itself is incomplete).
    Incomplete {
        /// How many more bytes are needed at least.
        needed: NonZeroUsize,
    },
    /// The Remaining Length of the fixed header has a fifth byte.
    MalformedRemainingLength,
    /// A Variable Byte Integer inside the packet (property length, property
    /// identifier, Subscription Identifier) is longer than four bytes.
    MalformedVariableByteInteger,
    /// The packet (fixed header + remaining length) is larger than allowed.
    PacketTooLarge {
        /// Declared total size of the packet in bytes (a lower bound if the
        /// remaining length was not fully received yet).
        size: usize,
        /// The maximum the caller accepts.
        max: usize,
    },
    /// The packet type nibble is reserved (0), or is AUTH (15) outside MQTT 5.
    InvalidPacketType(u8),
    /// The fixed header flags are not the ones the packet type requires
    /// (SUBSCRIBE/UNSUBSCRIBE/PUBREL must be `0b0010`, others `0`), or a QoS 0
    /// PUBLISH has the DUP flag set.
    InvalidFixedHeaderFlags,
    /// A QoS field has the value 3 (PUBLISH, will QoS or subscription options).
    InvalidQoS,
    /// A Packet Identifier that must be non-zero is zero.
    ZeroPacketId,
    /// A UTF-8 Encoded String is not well-formed UTF-8.
    InvalidUtf8,
    /// A UTF-8 Encoded String contains U+0000.
    NullCharacter,
    /// A Topic Name (PUBLISH or will topic) contains `+` or `#`.
    WildcardInTopicName,
    /// A Topic Filter is empty, misplaces a wildcard, or is a malformed shared
    /// subscription (`$share/{group}/{filter}`).
    InvalidTopicFilter,
    /// A Topic Name is empty (in MQTT 5 PUBLISH only allowed with a Topic Alias).
    EmptyTopic,
    /// A single-valued property occurs more than once.
    DuplicateProperty(u8),
    /// A property is not allowed on this packet type (or on the will).
    PropertyNotAllowed(u8),
    /// A property identifier that MQTT 5 does not define.
    UnknownProperty(u8),
    /// A property has a value the specification forbids (e.g. Topic Alias 0,
    /// Receive Maximum 0, a boolean byte other than 0 or 1, Maximum QoS 2).
    InvalidPropertyValue(u8),
    /// Authentication Data without an Authentication Method.
    AuthenticationDataWithoutMethod,
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    InvalidProtocolName,
    /// The CONNECT protocol level is not one we speak (3 with `MQIsdp`, 4 or 5
    /// with `MQTT`).
    UnsupportedProtocolVersion(u8),
    /// CONNECT flags are inconsistent: reserved bit set, will QoS/retain
    /// without the will flag, or (before MQTT 5) a password without a user name.
    InvalidConnectFlags,
    /// CONNACK acknowledge flags have reserved bits set, or Session Present is
    /// set together with a refusal code.
    InvalidConnAckFlags,
    /// A reason code (or MQTT 3 return code) that this packet type may not carry.
    InvalidReasonCode(u8),
    /// Reserved bits of a subscription options byte are set.
    InvalidSubscriptionOptions,
    /// Retain Handling has the value 3.
    InvalidRetainHandling,
    /// No Local is set on a shared subscription (MQTT 5).
    NoLocalOnSharedSubscription,
    /// A SUBSCRIBE or UNSUBSCRIBE carries no topic filter.
    NoTopicFilters,
    /// A SUBACK (or MQTT 5 UNSUBACK) carries no reason code.
    NoReasonCodes,
    /// A field runs past the end of the packet (or of its property block).
    UnexpectedEof,
    /// Bytes are left over after the last field of the packet.
    LengthMismatch,
}

impl DecodeError {
    /// The MQTT 5 reason code a server (or client) should send in its
    /// DISCONNECT, or in the CONNACK when the CONNECT itself fails to decode.
    ///
    /// Follows the specification's "it is a Malformed Packet" / "it is a
    /// Protocol Error" wording where it has one; elsewhere, violations of the
    /// wire format are Malformed Packet and violations of a rule about a
    /// well-formed value are Protocol Error.
    ///
    /// Two choices go beyond the text: a wildcard in a topic name answers
    /// 0x90 Topic Name invalid and a misplaced wildcard in a filter 0x8F
    /// Topic Filter invalid, as common brokers do (§2.4 describes those codes
    /// for well-formed topics a receiver refuses, so 0x81 would also be
    /// defensible); and an unknown protocol name answers 0x84 Unsupported
    /// Protocol Version like an unknown level (§3.1.2.1 leaves the response
    /// open).
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PACKET_TOO_LARGE,
            InvalidProtocolName | UnsupportedProtocolVersion(_) => {
                ReasonCode::UNSUPPORTED_PROTOCOL_VERSION
            }
            WildcardInTopicName => ReasonCode::TOPIC_NAME_INVALID,
            // §2.2.2.2: a packet carrying "an Identifier which is not valid for its
            // packet type" is a Malformed Packet.
            PropertyNotAllowed(_) => ReasonCode::MALFORMED_PACKET,
            InvalidTopicFilter => ReasonCode::TOPIC_FILTER_INVALID,
            // §3.3.2.3.4: zero-length topic without Topic Alias is a Protocol Error.
            EmptyTopic
            // §2.2.2.2 and each property: "It is a Protocol Error to include ... more than once",
            // "... to include a value of 0", "... a value other than 0 or 1".
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            // §3.1.2.11.10
            | AuthenticationDataWithoutMethod
            // §2.2.1: non-zero Packet Identifier required; the field itself is well-formed.
            | ZeroPacketId
            | InvalidReasonCode(_)
            // §3.8.3.1: "It is a Protocol Error to send a Retain Handling value of 3".
            | InvalidRetainHandling
            // §3.8.3.1: No Local on a shared subscription is a Protocol Error.
            | NoLocalOnSharedSubscription
            // §3.8.3 / §3.10.3: SUBSCRIBE / UNSUBSCRIBE with no payload is a Protocol Error.
            | NoTopicFilters
            | NoReasonCodes => ReasonCode::PROTOCOL_ERROR,
            Incomplete { .. }
            | MalformedRemainingLength
            | MalformedVariableByteInteger
            | InvalidPacketType(_)
            | InvalidFixedHeaderFlags
            | InvalidQoS
            | InvalidUtf8
            | NullCharacter
            | UnknownProperty(_)
            | InvalidConnectFlags
            | InvalidConnAckFlags
            | InvalidSubscriptionOptions
            | UnexpectedEof
            | LengthMismatch => ReasonCode::MALFORMED_PACKET,
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DecodeError::*;
        match self {
            Incomplete { needed } => write!(f, "incomplete packet: {needed} more bytes needed"),
            MalformedRemainingLength => f.write_str("remaining length longer than 4 bytes"),
            MalformedVariableByteInteger => {
                f.write_str("variable byte integer longer than 4 bytes")
            }
            PacketTooLarge { size, max } => {
                write!(f, "packet of {size} bytes exceeds the maximum of {max}")
            }
            InvalidPacketType(t) => write!(f, "invalid packet type {t}"),
            InvalidFixedHeaderFlags => f.write_str("invalid fixed header flags"),
            InvalidQoS => f.write_str("invalid QoS 3"),
            ZeroPacketId => f.write_str("packet identifier 0"),
            InvalidUtf8 => f.write_str("string is not valid UTF-8"),
            NullCharacter => f.write_str("string contains U+0000"),
            WildcardInTopicName => f.write_str("topic name contains a wildcard"),
            InvalidTopicFilter => f.write_str("invalid topic filter"),
            EmptyTopic => f.write_str("empty topic name"),
            DuplicateProperty(id) => write!(f, "property 0x{id:02X} included more than once"),
            PropertyNotAllowed(id) => write!(f, "property 0x{id:02X} not allowed here"),
            UnknownProperty(id) => write!(f, "unknown property 0x{id:02X}"),
            InvalidPropertyValue(id) => write!(f, "invalid value for property 0x{id:02X}"),
            AuthenticationDataWithoutMethod => {
                f.write_str("authentication data without authentication method")
            }
            InvalidProtocolName => f.write_str("invalid protocol name"),
            UnsupportedProtocolVersion(v) => write!(f, "unsupported protocol level {v}"),
            InvalidConnectFlags => f.write_str("invalid CONNECT flags"),
            InvalidConnAckFlags => f.write_str("invalid CONNACK flags"),
            InvalidReasonCode(c) => write!(f, "reason code 0x{c:02X} not allowed here"),
            InvalidSubscriptionOptions => f.write_str("reserved subscription option bits set"),
            InvalidRetainHandling => f.write_str("retain handling 3"),
            NoLocalOnSharedSubscription => f.write_str("no local set on a shared subscription"),
            NoTopicFilters => f.write_str("no topic filters"),
            NoReasonCodes => f.write_str("no reason codes"),
            UnexpectedEof => f.write_str("field runs past the end of the packet"),
            LengthMismatch => f.write_str("bytes left over after the last field"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Why a packet value cannot be written as a valid MQTT packet.
///
/// The encoder refuses anything the decoder would refuse, so whatever it
/// writes decodes back to an equal packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// The output buffer is shorter than the encoded packet.
    BufferTooSmall {
        /// Total bytes the packet needs.
        needed: usize,
    },
    /// The remaining length would exceed 268 435 455 bytes.
    PacketTooLarge,
    /// A UTF-8 string is longer than 65 535 bytes.
    StringTooLong,
    /// Binary data is longer than 65 535 bytes.
    BinaryTooLong,
    /// A UTF-8 string contains U+0000.
    NullCharacter,
    /// A packet identifier is 0.
    ZeroPacketId,
    /// A QoS 1/2 PUBLISH has no packet identifier.
    MissingPacketId,
    /// A QoS 0 PUBLISH has a packet identifier.
    UnexpectedPacketId,
    /// A QoS 0 PUBLISH has the DUP flag set.
    DupWithQoS0,
    /// The topic name is empty (in MQTT 5 allowed only with a Topic Alias),
    /// too long, contains a wildcard or U+0000.
    InvalidTopicName,
    /// A topic filter is not valid (or a malformed shared subscription).
    InvalidTopicFilter,
    /// No Local set on a shared subscription (MQTT 5).
    NoLocalOnSharedSubscription,
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters.
    NoTopicFilters,
    /// A SUBACK (or MQTT 5 UNSUBACK) without reason codes.
    NoReasonCodes,
    /// A reason code this packet type may not carry (in MQTT 3 CONNACK: a
    /// return code above 5; in MQTT 3 SUBACK: other than 0, 1, 2, 0x80).
    InvalidReasonCode(u8),
    /// Session Present set on a refusing CONNACK.
    SessionPresentWithError,
    /// Before MQTT 5, a password requires a user name.
    PasswordWithoutUsername,
    /// A property that this packet type (or the will) may not carry.
    PropertyNotAllowed(u8),
    /// A property value the specification forbids.
    InvalidPropertyValue(u8),
    /// Authentication Data without an Authentication Method.
    AuthenticationDataWithoutMethod,
    /// The packet type does not exist in this protocol version (AUTH before MQTT 5).
    PacketNotInVersion,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use EncodeError::*;
        match self {
            BufferTooSmall { needed } => write!(f, "buffer too small: {needed} bytes needed"),
            PacketTooLarge => f.write_str("remaining length exceeds 268435455"),
            StringTooLong => f.write_str("string longer than 65535 bytes"),
            BinaryTooLong => f.write_str("binary data longer than 65535 bytes"),
            NullCharacter => f.write_str("string contains U+0000"),
            ZeroPacketId => f.write_str("packet identifier 0"),
            MissingPacketId => f.write_str("QoS > 0 publish without packet identifier"),
            UnexpectedPacketId => f.write_str("QoS 0 publish with packet identifier"),
            DupWithQoS0 => f.write_str("QoS 0 publish with DUP set"),
            InvalidTopicName => f.write_str("invalid topic name"),
            InvalidTopicFilter => f.write_str("invalid topic filter"),
            NoLocalOnSharedSubscription => f.write_str("no local set on a shared subscription"),
            NoTopicFilters => f.write_str("no topic filters"),
            NoReasonCodes => f.write_str("no reason codes"),
            InvalidReasonCode(c) => write!(f, "reason code 0x{c:02X} not allowed here"),
            SessionPresentWithError => f.write_str("session present on a refusing CONNACK"),
            PasswordWithoutUsername => f.write_str("password without user name before MQTT 5"),
            PropertyNotAllowed(id) => write!(f, "property 0x{id:02X} not allowed here"),
            InvalidPropertyValue(id) => write!(f, "invalid value for property 0x{id:02X}"),
            AuthenticationDataWithoutMethod => {
                f.write_str("authentication data without authentication method")
            }
            PacketNotInVersion => f.write_str("packet type not available in this protocol version"),
        }
    }
}

impl core::error::Error for EncodeError {}
