//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK, with subscription options.
//!
//! Topic filter lists come in two forms: `Encoded` (the validated payload
//! bytes of a decoded packet, iterated lazily without allocating) and `Slice`
//! (built in code). Both iterate to the same items, and equality compares
//! items, not forms.

use core::fmt;

use super::decode::Reader;
use super::encode::{Encode, Writer, add, check_packet_id, string_len};
use super::error::{DecodeError, EncodeError};
use super::packet::{PacketType, ProtocolVersion, QoS};
use super::properties::{Properties, PropertyContext};
use super::reason::{ReasonCode, is_valid_v3_suback_code};
use crate::topic::{parse_shared, validate_topic_filter};

/// Retain Handling subscription option (MQTT 5, §3.8.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: send retained messages when the subscription is made.
    #[default]
    SendOnSubscribe = 0,
    /// 1: send retained messages only if the subscription did not exist.
    SendOnNewSubscribe = 1,
    /// 2: do not send retained messages.
    DoNotSend = 2,
}

impl RetainHandling {
    /// The value with this number; `None` for 3 and above.
    pub const fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::SendOnSubscribe),
            1 => Some(Self::SendOnNewSubscribe),
            2 => Some(Self::DoNotSend),
            _ => None,
        }
    }
}

/// Options of one subscription (the byte after each SUBSCRIBE topic filter).
/// Before MQTT 5 only `qos` exists on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the subscriber accepts.
    pub qos: QoS,
    /// MQTT 5: do not deliver messages published by this same client.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// MQTT 5: when to send retained messages.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with this QoS and everything else default.
    pub const fn with_qos(qos: QoS) -> Self {
        Self {
            qos,
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::SendOnSubscribe,
        }
    }

    /// Parses an options byte, rejecting reserved bits for `version`.
    pub fn from_byte(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions);
        }
        let qos = QoS::from_u8(byte & 0b11).ok_or(DecodeError::InvalidQoS)?;
        let retain_handling = RetainHandling::from_u8((byte >> 4) & 0b11)
            .ok_or(DecodeError::InvalidRetainHandling)?;
        Ok(Self {
            qos,
            no_local: byte & 0b0100 != 0,
            retain_as_published: byte & 0b1000 != 0,
            retain_handling,
        })
    }

    /// The options byte for `version` (before MQTT 5 only the QoS bits).
    pub const fn to_byte(self, version: ProtocolVersion) -> u8 {
        let qos = self.qos as u8;
        if !version.is_v5() {
            return qos;
        }
        qos | ((self.no_local as u8) << 2)
            | ((self.retain_as_published as u8) << 3)
            | ((self.retain_handling as u8) << 4)
    }
}

/// What is wrong with a topic filter in SUBSCRIBE / UNSUBSCRIBE.
enum FilterProblem {
    Invalid,
    NoLocalOnShared,
}

/// Checks a topic filter the way `version` reads it: in MQTT 5,
/// `$share/{group}/{filter}` is a shared subscription and must be well-formed.
/// Returns whether it is a shared subscription.
fn check_filter(filter: &str, version: ProtocolVersion) -> Result<bool, FilterProblem> {
    if version.is_v5() {
        match parse_shared(filter) {
            Ok(Some(_)) => return Ok(true),
            Ok(None) => {}
            Err(_) => return Err(FilterProblem::Invalid),
        }
    }
    validate_topic_filter(filter).map_err(|_| FilterProblem::Invalid)?;
    Ok(false)
}

fn check_subscription(
    filter: &str,
    options: SubscriptionOptions,
    version: ProtocolVersion,
) -> Result<(), FilterProblem> {
    let shared = check_filter(filter, version)?;
    // §3.8.3.1: No Local on a shared subscription is a Protocol Error.
    if shared && options.no_local && version.is_v5() {
        return Err(FilterProblem::NoLocalOnShared);
    }
    Ok(())
}

impl From<FilterProblem> for DecodeError {
    fn from(p: FilterProblem) -> Self {
        match p {
            FilterProblem::Invalid => Self::InvalidTopicFilter,
            FilterProblem::NoLocalOnShared => Self::NoLocalOnSharedSubscription,
        }
    }
}

impl From<FilterProblem> for EncodeError {
    fn from(p: FilterProblem) -> Self {
        match p {
            FilterProblem::Invalid => Self::InvalidTopicFilter,
            FilterProblem::NoLocalOnShared => Self::NoLocalOnSharedSubscription,
        }
    }
}

/// The topic filters of a SUBSCRIBE with their options.
#[derive(Clone, Copy)]
pub enum SubscribeFilters<'a> {
    /// The validated payload of a decoded SUBSCRIBE (filter, options byte, …).
    Encoded(&'a [u8]),
    /// Filters built in code.
    Slice(&'a [(&'a str, SubscriptionOptions)]),
}

/// Iterator over [`SubscribeFilters`].
#[derive(Clone)]
pub struct SubscribeFiltersIter<'a>(SubscribeIterInner<'a>);

#[derive(Clone)]
enum SubscribeIterInner<'a> {
    Encoded(Reader<'a>),
    Slice(core::slice::Iter<'a, (&'a str, SubscriptionOptions)>),
}

impl<'a> Iterator for SubscribeFiltersIter<'a> {
    type Item = (&'a str, SubscriptionOptions);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            SubscribeIterInner::Encoded(r) => {
                let item = (|| {
                    let filter = r.string()?;
                    let options = SubscriptionOptions::from_byte(r.u8()?, ProtocolVersion::V5)?;
                    Ok::<_, DecodeError>((filter, options))
                })();
                match item {
                    Ok(item) => Some(item),
                    Err(_) => {
                        // End of data (or bytes that were never validated).
                        *r = Reader::new(&[]);
                        None
                    }
                }
            }
            SubscribeIterInner::Slice(it) => it.next().copied(),
        }
    }
}

impl<'a> SubscribeFilters<'a> {
    /// The filters and their options, in order.
    pub fn iter(&self) -> SubscribeFiltersIter<'a> {
        SubscribeFiltersIter(match *self {
            Self::Encoded(b) => SubscribeIterInner::Encoded(Reader::new(b)),
            Self::Slice(s) => SubscribeIterInner::Slice(s.iter()),
        })
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        match self {
            Self::Encoded(_) => self.iter().count(),
            Self::Slice(s) => s.len(),
        }
    }

    /// Whether there is no filter.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl PartialEq for SubscribeFilters<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for SubscribeFilters<'_> {}

impl fmt::Debug for SubscribeFilters<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// SUBSCRIBE: a client asks for messages matching one or more topic filters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribe<'a> {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// SUBSCRIBE properties (MQTT 5: Subscription Identifier, User Properties).
    pub properties: Properties<'a>,
    /// At least one topic filter with its options.
    pub filters: SubscribeFilters<'a>,
}

impl<'a> Subscribe<'a> {
    pub(crate) fn decode_body(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::Subscribe)?
        } else {
            Properties::default()
        };
        let payload = r.rest();
        let mut p = Reader::new(payload);
        if p.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        while !p.is_empty() {
            let filter = p.string()?;
            let options = SubscriptionOptions::from_byte(p.u8()?, version)?;
            check_subscription(filter, options, version)?;
        }
        Ok(Self {
            packet_id,
            properties,
            filters: SubscribeFilters::Encoded(payload),
        })
    }
}

impl Encode for Subscribe<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::Subscribe.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        let mut len = 2;
        if version.is_v5() {
            len = add(len, self.properties.block_len(PropertyContext::Subscribe)?)?;
        }
        let mut count = 0usize;
        for (filter, options) in self.filters.iter() {
            check_subscription(filter, options, version)?;
            len = add(len, add(string_len(filter)?, 1)?)?;
            count += 1;
        }
        if count == 0 {
            return Err(EncodeError::NoTopicFilters);
        }
        Ok(len)
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u16(self.packet_id)?;
        if version.is_v5() {
            self.properties.write(PropertyContext::Subscribe, w)?;
        }
        for (filter, options) in self.filters.iter() {
            w.string(filter)?;
            w.u8(options.to_byte(version))?;
        }
        Ok(())
    }
}

/// SUBACK: the server's answer to a SUBSCRIBE, one code per filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubAck<'a> {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// SUBACK properties (MQTT 5: Reason String, User Properties).
    pub properties: Properties<'a>,
    /// One code per filter: granted QoS 0/1/2 or a failure (MQTT 3: only 0x80).
    pub return_codes: &'a [u8],
}

fn suback_code_is_valid(code: u8, version: ProtocolVersion) -> bool {
    if version.is_v5() {
        ReasonCode(code).is_valid_for(PacketType::SubAck)
    } else {
        is_valid_v3_suback_code(code)
    }
}

impl<'a> SubAck<'a> {
    pub(crate) fn decode_body(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::SubAck)?
        } else {
            Properties::default()
        };
        let return_codes = r.rest();
        check_codes(return_codes, |c| suback_code_is_valid(c, version))?;
        Ok(Self {
            packet_id,
            properties,
            return_codes,
        })
    }
}

/// Checks a non-empty list of reason codes.
fn check_codes(codes: &[u8], valid: impl Fn(u8) -> bool) -> Result<(), DecodeError> {
    if codes.is_empty() {
        return Err(DecodeError::NoReasonCodes);
    }
    match codes.iter().find(|&&c| !valid(c)) {
        Some(&c) => Err(DecodeError::InvalidReasonCode(c)),
        None => Ok(()),
    }
}

/// Encoder side of [`check_codes`].
fn check_codes_encode(codes: &[u8], valid: impl Fn(u8) -> bool) -> Result<(), EncodeError> {
    check_codes(codes, valid).map_err(|e| match e {
        DecodeError::InvalidReasonCode(c) => EncodeError::InvalidReasonCode(c),
        _ => EncodeError::NoReasonCodes,
    })
}

impl Encode for SubAck<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::SubAck.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        check_codes_encode(self.return_codes, |c| suback_code_is_valid(c, version))?;
        let mut len = 2;
        if version.is_v5() {
            len = add(len, self.properties.block_len(PropertyContext::SubAck)?)?;
        }
        add(len, self.return_codes.len())
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u16(self.packet_id)?;
        if version.is_v5() {
            self.properties.write(PropertyContext::SubAck, w)?;
        }
        w.bytes(self.return_codes)
    }
}

/// The topic filters of an UNSUBSCRIBE.
#[derive(Clone, Copy)]
pub enum UnsubscribeFilters<'a> {
    /// The validated payload of a decoded UNSUBSCRIBE (length-prefixed strings).
    Encoded(&'a [u8]),
    /// Filters built in code.
    Slice(&'a [&'a str]),
}

/// Iterator over [`UnsubscribeFilters`].
#[derive(Clone)]
pub struct UnsubscribeFiltersIter<'a>(UnsubscribeIterInner<'a>);

#[derive(Clone)]
enum UnsubscribeIterInner<'a> {
    Encoded(Reader<'a>),
    Slice(core::slice::Iter<'a, &'a str>),
}

impl<'a> Iterator for UnsubscribeFiltersIter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match &mut self.0 {
            UnsubscribeIterInner::Encoded(r) => match r.string() {
                Ok(filter) => Some(filter),
                Err(_) => {
                    *r = Reader::new(&[]);
                    None
                }
            },
            UnsubscribeIterInner::Slice(it) => it.next().copied(),
        }
    }
}

impl<'a> UnsubscribeFilters<'a> {
    /// The filters in order.
    pub fn iter(&self) -> UnsubscribeFiltersIter<'a> {
        UnsubscribeFiltersIter(match *self {
            Self::Encoded(b) => UnsubscribeIterInner::Encoded(Reader::new(b)),
            Self::Slice(s) => UnsubscribeIterInner::Slice(s.iter()),
        })
    }

    /// Number of filters.
    pub fn len(&self) -> usize {
        match self {
            Self::Encoded(_) => self.iter().count(),
            Self::Slice(s) => s.len(),
        }
    }

    /// Whether there is no filter.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

impl PartialEq for UnsubscribeFilters<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UnsubscribeFilters<'_> {}

impl fmt::Debug for UnsubscribeFilters<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// UNSUBSCRIBE: a client removes one or more subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsubscribe<'a> {
    /// Packet identifier (non-zero).
    pub packet_id: u16,
    /// UNSUBSCRIBE properties (MQTT 5: User Properties).
    pub properties: Properties<'a>,
    /// At least one topic filter.
    pub filters: UnsubscribeFilters<'a>,
}

impl<'a> Unsubscribe<'a> {
    pub(crate) fn decode_body(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version.is_v5() {
            Properties::decode(r, PropertyContext::Unsubscribe)?
        } else {
            Properties::default()
        };
        let payload = r.rest();
        let mut p = Reader::new(payload);
        if p.is_empty() {
            return Err(DecodeError::NoTopicFilters);
        }
        while !p.is_empty() {
            check_filter(p.string()?, version)?;
        }
        Ok(Self {
            packet_id,
            properties,
            filters: UnsubscribeFilters::Encoded(payload),
        })
    }
}

impl Encode for Unsubscribe<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::Unsubscribe.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        let mut len = 2;
        if version.is_v5() {
            len = add(
                len,
                self.properties.block_len(PropertyContext::Unsubscribe)?,
            )?;
        }
        let mut count = 0usize;
        for filter in self.filters.iter() {
            check_filter(filter, version)?;
            len = add(len, string_len(filter)?)?;
            count += 1;
        }
        if count == 0 {
            return Err(EncodeError::NoTopicFilters);
        }
        Ok(len)
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u16(self.packet_id)?;
        if version.is_v5() {
            self.properties.write(PropertyContext::Unsubscribe, w)?;
        }
        for filter in self.filters.iter() {
            w.string(filter)?;
        }
        Ok(())
    }
}

/// UNSUBACK: the server's answer to an UNSUBSCRIBE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnsubAck<'a> {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// UNSUBACK properties (MQTT 5: Reason String, User Properties).
    pub properties: Properties<'a>,
    /// MQTT 5: one reason code per filter. Empty before MQTT 5 (and ignored
    /// when encoding for MQTT 3).
    pub reason_codes: &'a [u8],
}

fn unsuback_code_is_valid(code: u8) -> bool {
    ReasonCode(code).is_valid_for(PacketType::UnsubAck)
}

impl<'a> UnsubAck<'a> {
    pub(crate) fn decode_body(
        r: &mut Reader<'a>,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        if !version.is_v5() {
            return Ok(Self {
                packet_id,
                properties: Properties::default(),
                reason_codes: &[],
            });
        }
        let properties = Properties::decode(r, PropertyContext::UnsubAck)?;
        let reason_codes = r.rest();
        check_codes(reason_codes, unsuback_code_is_valid)?;
        Ok(Self {
            packet_id,
            properties,
            reason_codes,
        })
    }
}

impl Encode for UnsubAck<'_> {
    fn header_byte(&self) -> u8 {
        PacketType::UnsubAck.header_byte()
    }

    fn body_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        check_packet_id(self.packet_id)?;
        if !version.is_v5() {
            return Ok(2);
        }
        check_codes_encode(self.reason_codes, unsuback_code_is_valid)?;
        let len = add(2, self.properties.block_len(PropertyContext::UnsubAck)?)?;
        add(len, self.reason_codes.len())
    }

    fn write_body(&self, version: ProtocolVersion, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        w.u16(self.packet_id)?;
        if version.is_v5() {
            self.properties.write(PropertyContext::UnsubAck, w)?;
            w.bytes(self.reason_codes)?;
        }
        Ok(())
    }
}
