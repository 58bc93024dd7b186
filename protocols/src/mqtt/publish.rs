//! PUBLISH and its acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP).
//!
//! [`Publish::encoded_len`] and [`Publish::encode`] are the gateway's fast
//! path for delivering messages: no allocation, stored user properties are
//! copied verbatim from their wire form.

use super::connect::check_topic_name;
use super::decode::Reader;
use super::encode::{self, Encode, Writer, add, check_packet_id, string_len};
use super::error::{DecodeError, EncodeError};
use super::packet::{PacketType, ProtocolVersion, QoS};
use super::properties::{Properties, PropertyContext};
use super::reason::ReasonCode;
use crate::topic::validate_topic_name;

/// PUBLISH: an application message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish<'a> {
    /// DUP: this may be a re-delivery (never set on QoS 0).
    pub dup: bool,
    /// Delivery QoS.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name. In MQTT 5 it may be empty when a Topic Alias property is
    /// present; the receiver resolves the alias.
    pub topic: &'a str,
    /// Packet identifier: `Some` (non-zero) exactly when QoS > 0.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (MQTT 5; default before).
    pub properties: Properties<'a>,
    /// Application payload.
    pub payload: &'a [u8],
}

impl<'a> Publish<'a> {
    pub(crate) fn decode_body(
        flags: u8,
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0b1000 != 0;
        let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let retain = flags & 0b0001 != 0;
        // §3.3.1.1: the DUP flag must be 0 for QoS 0 messages.
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::InvalidFixedHeaderFlags);
        }
        let topic = r.string()?;
        let packet_id = if qos == QoS::AtMostOnce {
            None
        } else {
            Some(r.packet_id()?)
        };
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::Publish)?
        } else {
            Properties::default()
        };
        // §3.3.2.3.4: an empty topic name is allowed only with a Topic Alias.
        if !(topic.is_empty() && version.is_v5() && properties.topic_alias.is_some()) {
            check_topic_name(topic)?;
        }
        Ok(Self {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    /// Exact encoded size of this PUBLISH in `version`, after checking it is
    /// encodable.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        encode::encoded_len(self, version)
    }

    /// Encodes this PUBLISH at the start of `buf`; returns the bytes written.
    pub fn encode(&self, version: ProtocolVersion, buf: &mut [u8]) -> Result<usize, EncodeError> {
        encode::encode(self, version, buf)
    }
}

impl Encode for Publish<'_> {
    fn header_byte(&self) -> u8 {
        ((PacketType::Publish as u8) << 4)
            | (u8::from(self.dup) << 3)
            | (self.qos.as_u8() << 1)
            | u8::from(self.retain)
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, Some(_)) => return Err(EncodeError::UnexpectedPacketId),
            (QoS::AtMostOnce, None) => {
                if self.dup {
                    return Err(EncodeError::DupWithQoS0);
                }
            }
            (_, None) => return Err(EncodeError::MissingPacketId),
            (_, Some(id)) => check_packet_id(id)?,
        }
        let aliased =
            self.topic.is_empty() && version.is_v5() && self.properties.topic_alias.is_some();
        if !aliased {
            validate_topic_name(self.topic).map_err(|_| EncodeError::InvalidTopicName)?;
        }
        let mut len = string_len(self.topic)?;
        if self.packet_id.is_some() {
            len += 2;
        }
        if version.is_v5() {
            len = add(len, self.properties.block_len(PropertyContext::Publish)?)?;
        }
        add(len, self.payload.len())
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.string(self.topic)?;
        if let Some(id) = self.packet_id {
            w.u16(id)?;
        }
        if version.is_v5() {
            self.properties.write(PropertyContext::Publish, w)?;
        }
        w.bytes(self.payload)
    }
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP (which one is said by the [`Packet`](super::Packet) variant).
///
/// In MQTT 5 the short forms are used when possible: remaining length 2 when
/// the reason is Success and there are no properties, 3 when there are no
/// properties. Before MQTT 5 only `packet_id` is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PubResponse<'a> {
    /// Packet identifier of the PUBLISH (or PUBREL) acknowledged.
    pub packet_id: u16,
    /// Reason code (MQTT 5; `SUCCESS` before).
    pub reason: ReasonCode,
    /// Properties (MQTT 5; default before).
    pub properties: Properties<'a>,
}

const fn context_of(kind: PacketType) -> PropertyContext {
    match kind {
        PacketType::PubRec => PropertyContext::PubRec,
        PacketType::PubRel => PropertyContext::PubRel,
        PacketType::PubComp => PropertyContext::PubComp,
        _ => PropertyContext::PubAck,
    }
}

impl<'a> PubResponse<'a> {
    /// A Success response without properties.
    pub const fn new(packet_id: u16) -> Self {
        Self {
            packet_id,
            reason: ReasonCode::SUCCESS,
            properties: Properties::new(),
        }
    }

    pub(crate) fn decode_body(
        kind: PacketType,
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut response = Self::new(packet_id);
        if !version.is_v5() || r.is_empty() {
            return Ok(response);
        }
        response.reason = ReasonCode(r.u8()?);
        if !response.reason.is_valid_for(kind) {
            return Err(DecodeError::InvalidReasonCode(response.reason.0));
        }
        // §3.4.2.2: with remaining length < 4 there is no property length.
        if !r.is_empty() {
            response.properties = Properties::decode(r, context_of(kind))?;
        }
        Ok(response)
    }

    /// This response viewed as a packet of type `kind`, for encoding.
    pub(crate) const fn as_kind<'r>(&'r self, kind: PacketType) -> PubResponseOf<'r, 'a> {
        PubResponseOf { kind, inner: self }
    }
}

/// A [`PubResponse`] together with the packet type it is sent as.
pub(crate) struct PubResponseOf<'r, 'a> {
    kind: PacketType,
    inner: &'r PubResponse<'a>,
}

impl PubResponseOf<'_, '_> {
    /// Property block length, 0 when the block can be left out entirely.
    fn properties_len(&self) -> Result<usize, EncodeError> {
        self.inner.properties.encoded_len(context_of(self.kind))
    }
}

impl Encode for PubResponseOf<'_, '_> {
    fn header_byte(&self) -> u8 {
        self.kind.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.inner.packet_id)?;
        if !version.is_v5() {
            return Ok(2);
        }
        if !self.inner.reason.is_valid_for(self.kind) {
            return Err(EncodeError::InvalidReasonCode(self.inner.reason.0));
        }
        let props = self.properties_len()?;
        Ok(match (self.inner.reason, props) {
            (ReasonCode::SUCCESS, 0) => 2,
            (_, 0) => 3,
            _ => add(3, self.inner.properties.block_len(context_of(self.kind))?)?,
        })
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u16(self.inner.packet_id)?;
        if !version.is_v5() {
            return Ok(());
        }
        let props = self.properties_len()?;
        if self.inner.reason == ReasonCode::SUCCESS && props == 0 {
            return Ok(());
        }
        w.u8(self.inner.reason.0)?;
        if props > 0 {
            self.inner.properties.write(context_of(self.kind), w)?;
        }
        Ok(())
    }
}
