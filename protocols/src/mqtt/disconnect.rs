//! DISCONNECT and AUTH: the two packets that are only a reason code and
//! properties (and, before MQTT 5, DISCONNECT is empty and AUTH does not exist).

use super::decode::Reader;
use super::encode::{Encode, Writer, add};
use super::error::{DecodeError, EncodeError};
use super::packet::{PacketType, ProtocolVersion};
use super::properties::{Properties, PropertyContext};
use super::reason::ReasonCode;

/// DISCONNECT: the sender is closing the connection, and (MQTT 5) why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Disconnect<'a> {
    /// MQTT 5 reason code (`NORMAL_DISCONNECTION` before MQTT 5).
    pub reason: ReasonCode,
    /// DISCONNECT properties (MQTT 5; default before).
    pub properties: Properties<'a>,
}

/// AUTH: one step of an MQTT 5 extended authentication exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Auth<'a> {
    /// Success, Continue authentication or Re-authenticate.
    pub reason: ReasonCode,
    /// AUTH properties (Authentication Method/Data, Reason String, User Properties).
    pub properties: Properties<'a>,
}

/// Decodes the optional reason code and optional property block shared by
/// DISCONNECT and AUTH (§3.14.2, §3.15.2): an empty body means Success with
/// no properties, a body of one byte means no properties.
fn decode_reason_and_properties<'a>(
    r: &mut Reader<'a>,
    kind: PacketType,
    ctx: PropertyContext,
) -> Result<(ReasonCode, Properties<'a>), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::SUCCESS, Properties::default()));
    }
    let reason = ReasonCode(r.u8()?);
    if !reason.is_valid_for(kind) {
        return Err(DecodeError::InvalidReasonCode(reason.0));
    }
    let properties = if r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, ctx)?
    };
    Ok((reason, properties))
}

impl<'a> Disconnect<'a> {
    pub(crate) fn decode_body(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        if !version.is_v5() {
            // Before MQTT 5 DISCONNECT has no body; `finish` rejects any.
            return Ok(Self::default());
        }
        let (reason, properties) =
            decode_reason_and_properties(r, PacketType::Disconnect, PropertyContext::Disconnect)?;
        Ok(Self { reason, properties })
    }
}

impl Encode for Disconnect<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::Disconnect.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Ok(0);
        }
        if !self.reason.is_valid_for(PacketType::Disconnect) {
            return Err(EncodeError::InvalidReasonCode(self.reason.0));
        }
        // Always the full form (reason code and property length), which the
        // spec allows and every client reads; some (rumqttc 0.25) cannot read
        // the short forms.
        add(1, self.properties.block_len(PropertyContext::Disconnect)?)
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        if !version.is_v5() {
            return Ok(());
        }
        w.u8(self.reason.0)?;
        self.properties.write(PropertyContext::Disconnect, w)
    }
}

impl<'a> Auth<'a> {
    pub(crate) fn decode_body(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let (reason, properties) =
            decode_reason_and_properties(r, PacketType::Auth, PropertyContext::Auth)?;
        Ok(Self { reason, properties })
    }
}

impl Encode for Auth<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::Auth.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        if !version.is_v5() {
            return Err(EncodeError::PacketNotInVersion);
        }
        if !self.reason.is_valid_for(PacketType::Auth) {
            return Err(EncodeError::InvalidReasonCode(self.reason.0));
        }
        let props = self.properties.encoded_len(PropertyContext::Auth)?;
        // §3.15.2.1: only "Success with no properties" may drop the reason
        // code; otherwise the reason code and property length are both sent.
        if self.reason == ReasonCode::SUCCESS && props == 0 {
            Ok(0)
        } else {
            add(1, self.properties.block_len(PropertyContext::Auth)?)
        }
    }

    fn write_body(&self, _: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        let props = self.properties.encoded_len(PropertyContext::Auth)?;
        if self.reason == ReasonCode::SUCCESS && props == 0 {
            return Ok(());
        }
        w.u8(self.reason.0)?;
        self.properties.write(PropertyContext::Auth, w)
    }
}
