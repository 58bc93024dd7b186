//! CONNECT (with its will) and CONNACK: opening a session.
//!
//! CONNECT is the one self-describing packet: it carries the protocol name and
//! level, so it is decoded the same way whatever version the caller assumed,
//! and encoded in the version its own [`Connect::protocol`] names.

use super::decode::Reader;
use super::encode::{Encode, Writer, add, binary_len, string_len};
use super::error::{DecodeError, EncodeError};
use super::packet::{PacketType, ProtocolVersion, QoS};
use super::properties::{Properties, PropertyContext};
use super::reason::{ConnectReturnCode, ReasonCode};
use crate::topic::{TopicError, validate_topic_name};

/// CONNECT flag bits (§3.1.2.3).
mod flags {
    pub const RESERVED: u8 = 0x01;
    pub const CLEAN_START: u8 = 0x02;
    pub const WILL: u8 = 0x04;
    pub const WILL_QOS_SHIFT: u8 = 3;
    pub const WILL_QOS_MASK: u8 = 0x18;
    pub const WILL_RETAIN: u8 = 0x20;
    pub const PASSWORD: u8 = 0x40;
    pub const USERNAME: u8 = 0x80;
}

/// The will message a server publishes if the connection ends without a
/// normal DISCONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Will<'a> {
    /// Topic name the will is published to.
    pub topic: &'a str,
    /// Message payload.
    pub payload: &'a [u8],
    /// QoS the will is published with.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// Will properties (MQTT 5; default before).
    pub properties: Properties<'a>,
}

/// CONNECT: a client asks to open (or resume) a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect<'a> {
    /// The protocol version the client speaks (from the protocol name and level).
    pub protocol: ProtocolVersion,
    /// Clean Start (MQTT 5) / Clean Session (MQTT 3).
    pub clean_start: bool,
    /// Keep alive interval in seconds (0 disables it).
    pub keep_alive: u16,
    /// Client identifier; may be empty (the server decides whether to accept it).
    pub client_id: &'a str,
    /// Will message, if any.
    pub will: Option<Will<'a>>,
    /// User name, if any.
    pub username: Option<&'a str>,
    /// Password, if any (MQTT 3 requires a user name with it).
    pub password: Option<&'a [u8]>,
    /// CONNECT properties (MQTT 5; default before).
    pub properties: Properties<'a>,
}

fn topic_name_error(e: TopicError) -> DecodeError {
    match e {
        TopicError::Empty => DecodeError::EmptyTopic,
        TopicError::NullCharacter => DecodeError::NullCharacter,
        // A decoded string is at most 65 535 bytes, so `TooLong` cannot
        // happen, and the share-name variants only come from filters.
        TopicError::WildcardInName
        | TopicError::TooLong
        | TopicError::MisplacedMultiLevelWildcard
        | TopicError::MisplacedSingleLevelWildcard
        | TopicError::InvalidShareName
        | TopicError::MissingShareFilter => DecodeError::WildcardInTopicName,
    }
}

/// Validates a decoded topic name (PUBLISH or will), mapping the error.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    validate_topic_name(topic).map_err(topic_name_error)
}

impl<'a> Connect<'a> {
    pub(crate) fn decode_body(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol = match (name, level) {
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT" | b"MQIsdp", other) => {
                return Err(DecodeError::UnsupportedProtocolVersion(other));
            }
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let v5 = protocol.is_v5();
        let connect_flags = r.u8()?;
        let will_flag = connect_flags & flags::WILL != 0;
        let will_qos_bits = (connect_flags & flags::WILL_QOS_MASK) >> flags::WILL_QOS_SHIFT;
        let will_retain = connect_flags & flags::WILL_RETAIN != 0;
        let has_password = connect_flags & flags::PASSWORD != 0;
        let has_username = connect_flags & flags::USERNAME != 0;
        if connect_flags & flags::RESERVED != 0 {
            return Err(DecodeError::InvalidConnectFlags);
        }
        if !will_flag && (will_qos_bits != 0 || will_retain) {
            return Err(DecodeError::InvalidConnectFlags);
        }
        let will_qos = QoS::from_u8(will_qos_bits).ok_or(DecodeError::InvalidQoS)?;
        if !v5 && has_password && !has_username {
            return Err(DecodeError::InvalidConnectFlags);
        }
        let keep_alive = r.u16()?;
        let properties = if v5 {
            Properties::decode(r, PropertyContext::Connect)?
        } else {
            Properties::default()
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = if v5 {
                Properties::decode(r, PropertyContext::Will)?
            } else {
                Properties::default()
            };
            let topic = r.string()?;
            check_topic_name(topic)?;
            let payload = r.binary()?;
            Some(Will {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        Ok(Self {
            protocol,
            clean_start: connect_flags & flags::CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    fn flags_byte(&self) -> u8 {
        let mut b = 0;
        if self.clean_start {
            b |= flags::CLEAN_START;
        }
        if let Some(will) = &self.will {
            b |= flags::WILL | (will.qos.as_u8() << flags::WILL_QOS_SHIFT);
            if will.retain {
                b |= flags::WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            b |= flags::PASSWORD;
        }
        if self.username.is_some() {
            b |= flags::USERNAME;
        }
        b
    }

    /// Exact encoded size. CONNECT is always encoded in [`Self::protocol`].
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        super::encode::encoded_len(self, self.protocol)
    }

    /// Encodes at the start of `buf` in [`Self::protocol`]; returns the bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        super::encode::encode(self, self.protocol, buf)
    }
}

impl Encode for Connect<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::Connect.header_byte()
    }

    fn body_len(&self, _: ProtocolVersion) -> Result<usize, EncodeError> {
        let protocol = self.protocol;
        let v5 = protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUsername);
        }
        // Protocol name, level, flags, keep alive.
        let mut len = string_len(protocol.protocol_name())? + 1 + 1 + 2;
        if v5 {
            len = add(len, self.properties.block_len(PropertyContext::Connect)?)?;
        }
        len = add(len, string_len(self.client_id)?)?;
        if let Some(will) = &self.will {
            if v5 {
                len = add(len, will.properties.block_len(PropertyContext::Will)?)?;
            }
            validate_topic_name(will.topic).map_err(|_| EncodeError::InvalidTopicName)?;
            len = add(len, string_len(will.topic)?)?;
            len = add(len, binary_len(will.payload)?)?;
        }
        if let Some(username) = self.username {
            len = add(len, string_len(username)?)?;
        }
        if let Some(password) = self.password {
            len = add(len, binary_len(password)?)?;
        }
        Ok(len)
    }

    fn write_body(&self, _: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let protocol = self.protocol;
        let v5 = protocol.is_v5();
        w.string(protocol.protocol_name())?;
        w.u8(protocol.level())?;
        w.u8(self.flags_byte())?;
        w.u16(self.keep_alive)?;
        if v5 {
            self.properties.write(PropertyContext::Connect, w)?;
        }
        w.string(self.client_id)?;
        if let Some(will) = &self.will {
            if v5 {
                will.properties.write(PropertyContext::Will, w)?;
            }
            w.string(will.topic)?;
            w.binary(will.payload)?;
        }
        if let Some(username) = self.username {
            w.string(username)?;
        }
        if let Some(password) = self.password {
            w.binary(password)?;
        }
        Ok(())
    }
}

/// CONNACK: the server accepts or refuses a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck<'a> {
    /// Whether the server resumed an existing session (must be false when refusing).
    pub session_present: bool,
    /// MQTT 5: the reason code. MQTT 3: the return code (0..=5) in `.0`.
    pub code: ReasonCode,
    /// CONNACK properties (MQTT 5; default before).
    pub properties: Properties<'a>,
}

impl<'a> ConnAck<'a> {
    pub(crate) fn decode_body(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let ack_flags = r.u8()?;
        if ack_flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let session_present = ack_flags & 0x01 != 0;
        let code = ReasonCode(r.u8()?);
        let valid = if version.is_v5() {
            code.is_valid_for(PacketType::ConnAck)
        } else {
            ConnectReturnCode::from_u8(code.0).is_some()
        };
        if !valid {
            return Err(DecodeError::InvalidReasonCode(code.0));
        }
        // §3.2.2.1.1: a refusing CONNACK must not claim a session.
        if session_present && code.0 != 0 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::ConnAck)?
        } else {
            Properties::default()
        };
        Ok(Self {
            session_present,
            code,
            properties,
        })
    }
}

impl Encode for ConnAck<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::ConnAck.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        let valid = if version.is_v5() {
            self.code.is_valid_for(PacketType::ConnAck)
        } else {
            ConnectReturnCode::from_u8(self.code.0).is_some()
        };
        if !valid {
            return Err(EncodeError::InvalidReasonCode(self.code.0));
        }
        if self.session_present && self.code.0 != 0 {
            return Err(EncodeError::SessionPresentWithError);
        }
        if version.is_v5() {
            add(2, self.properties.block_len(PropertyContext::ConnAck)?)
        } else {
            Ok(2)
        }
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u8(u8::from(self.session_present))?;
        w.u8(self.code.0)?;
        if version.is_v5() {
            self.properties.write(PropertyContext::ConnAck, w)?;
        }
        Ok(())
    }
}
