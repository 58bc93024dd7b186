//! MQTT 5 properties (§2.2.2): one [`Properties`] struct used by every packet
//! type, plus the two multi-valued properties in a zero-copy form.
//!
//! Decoding validates the whole property block against the packet it belongs
//! to (the [`PropertyContext`]): unknown identifiers, properties not allowed
//! there, duplicates of single-valued properties and values the specification
//! forbids are all errors. Single-valued properties land in `Option` fields;
//! User Properties and (PUBLISH) Subscription Identifiers keep pointing at the
//! validated wire bytes ([`UserProperties::Encoded`],
//! [`SubscriptionIds::Encoded`]) so that a server can store them with a
//! message and send them again without allocating.
//!
//! Encoding refuses the same things decoding refuses, so an encoded property
//! block always decodes back to equal properties.

use core::fmt;

use super::decode::{Reader, to_usize};
use super::encode::{Writer, add, binary_len, string_len, varint_len};
use super::error::{DecodeError, EncodeError};
use super::packet::MAX_REMAINING_LENGTH;
use crate::topic::validate_topic_name;

/// Property identifiers (§2.2.2.2), used in errors and on the wire.
pub mod id {
    /// 0x01 Payload Format Indicator (byte).
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    /// 0x02 Message Expiry Interval (four byte integer).
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    /// 0x03 Content Type (UTF-8 string).
    pub const CONTENT_TYPE: u8 = 0x03;
    /// 0x08 Response Topic (UTF-8 string).
    pub const RESPONSE_TOPIC: u8 = 0x08;
    /// 0x09 Correlation Data (binary).
    pub const CORRELATION_DATA: u8 = 0x09;
    /// 0x0B Subscription Identifier (variable byte integer).
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    /// 0x11 Session Expiry Interval (four byte integer).
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    /// 0x12 Assigned Client Identifier (UTF-8 string).
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    /// 0x13 Server Keep Alive (two byte integer).
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    /// 0x15 Authentication Method (UTF-8 string).
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    /// 0x16 Authentication Data (binary).
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    /// 0x17 Request Problem Information (byte).
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    /// 0x18 Will Delay Interval (four byte integer).
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    /// 0x19 Request Response Information (byte).
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    /// 0x1A Response Information (UTF-8 string).
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    /// 0x1C Server Reference (UTF-8 string).
    pub const SERVER_REFERENCE: u8 = 0x1C;
    /// 0x1F Reason String (UTF-8 string).
    pub const REASON_STRING: u8 = 0x1F;
    /// 0x21 Receive Maximum (two byte integer).
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    /// 0x22 Topic Alias Maximum (two byte integer).
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    /// 0x23 Topic Alias (two byte integer).
    pub const TOPIC_ALIAS: u8 = 0x23;
    /// 0x24 Maximum QoS (byte).
    pub const MAXIMUM_QOS: u8 = 0x24;
    /// 0x25 Retain Available (byte).
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    /// 0x26 User Property (UTF-8 string pair).
    pub const USER_PROPERTY: u8 = 0x26;
    /// 0x27 Maximum Packet Size (four byte integer).
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    /// 0x28 Wildcard Subscription Available (byte).
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    /// 0x29 Subscription Identifier Available (byte).
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    /// 0x2A Shared Subscription Available (byte).
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

/// Where a property block appears; decides which properties are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyContext {
    /// CONNECT variable header.
    Connect,
    /// Will properties in the CONNECT payload.
    Will,
    /// CONNACK.
    ConnAck,
    /// PUBLISH.
    Publish,
    /// PUBACK.
    PubAck,
    /// PUBREC.
    PubRec,
    /// PUBREL.
    PubRel,
    /// PUBCOMP.
    PubComp,
    /// SUBSCRIBE.
    Subscribe,
    /// SUBACK.
    SubAck,
    /// UNSUBSCRIBE.
    Unsubscribe,
    /// UNSUBACK.
    UnsubAck,
    /// DISCONNECT.
    Disconnect,
    /// AUTH.
    Auth,
}

impl PropertyContext {
    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Wire type of a property value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Byte,
    U16,
    U32,
    VarInt,
    Str,
    Bin,
    Pair,
}

/// The wire type of a property and the contexts it is allowed in (§2.2.2.2).
const fn spec(property: u8) -> Option<(Kind, u16)> {
    use PropertyContext as C;
    const PUBLISH_WILL: u16 = C::Publish.bit() | C::Will.bit();
    const ACKS: u16 = C::PubAck.bit()
        | C::PubRec.bit()
        | C::PubRel.bit()
        | C::PubComp.bit()
        | C::SubAck.bit()
        | C::UnsubAck.bit();
    Some(match property {
        id::PAYLOAD_FORMAT_INDICATOR => (Kind::Byte, PUBLISH_WILL),
        id::MESSAGE_EXPIRY_INTERVAL => (Kind::U32, PUBLISH_WILL),
        id::CONTENT_TYPE => (Kind::Str, PUBLISH_WILL),
        id::RESPONSE_TOPIC => (Kind::Str, PUBLISH_WILL),
        id::CORRELATION_DATA => (Kind::Bin, PUBLISH_WILL),
        id::SUBSCRIPTION_IDENTIFIER => (Kind::VarInt, C::Publish.bit() | C::Subscribe.bit()),
        id::SESSION_EXPIRY_INTERVAL => (
            Kind::U32,
            C::Connect.bit() | C::ConnAck.bit() | C::Disconnect.bit(),
        ),
        id::ASSIGNED_CLIENT_IDENTIFIER => (Kind::Str, C::ConnAck.bit()),
        id::SERVER_KEEP_ALIVE => (Kind::U16, C::ConnAck.bit()),
        id::AUTHENTICATION_METHOD => (
            Kind::Str,
            C::Connect.bit() | C::ConnAck.bit() | C::Auth.bit(),
        ),
        id::AUTHENTICATION_DATA => (
            Kind::Bin,
            C::Connect.bit() | C::ConnAck.bit() | C::Auth.bit(),
        ),
        id::REQUEST_PROBLEM_INFORMATION => (Kind::Byte, C::Connect.bit()),
        id::WILL_DELAY_INTERVAL => (Kind::U32, C::Will.bit()),
        id::REQUEST_RESPONSE_INFORMATION => (Kind::Byte, C::Connect.bit()),
        id::RESPONSE_INFORMATION => (Kind::Str, C::ConnAck.bit()),
        id::SERVER_REFERENCE => (Kind::Str, C::ConnAck.bit() | C::Disconnect.bit()),
        id::REASON_STRING => (
            Kind::Str,
            C::ConnAck.bit() | ACKS | C::Disconnect.bit() | C::Auth.bit(),
        ),
        id::RECEIVE_MAXIMUM => (Kind::U16, C::Connect.bit() | C::ConnAck.bit()),
        id::TOPIC_ALIAS_MAXIMUM => (Kind::U16, C::Connect.bit() | C::ConnAck.bit()),
        id::TOPIC_ALIAS => (Kind::U16, C::Publish.bit()),
        id::MAXIMUM_QOS => (Kind::Byte, C::ConnAck.bit()),
        id::RETAIN_AVAILABLE => (Kind::Byte, C::ConnAck.bit()),
        id::USER_PROPERTY => (Kind::Pair, u16::MAX),
        id::MAXIMUM_PACKET_SIZE => (Kind::U32, C::Connect.bit() | C::ConnAck.bit()),
        id::WILDCARD_SUBSCRIPTION_AVAILABLE => (Kind::Byte, C::ConnAck.bit()),
        id::SUBSCRIPTION_IDENTIFIER_AVAILABLE => (Kind::Byte, C::ConnAck.bit()),
        id::SHARED_SUBSCRIPTION_AVAILABLE => (Kind::Byte, C::ConnAck.bit()),
        _ => return None,
    })
}

/// Whether property `property` may appear in `ctx`.
pub const fn is_allowed(property: u8, ctx: PropertyContext) -> bool {
    match spec(property) {
        Some((_, mask)) => mask & ctx.bit() != 0,
        None => false,
    }
}

/// One decoded property value.
#[derive(Clone, Copy)]
enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    VarInt(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

/// Reads a property identifier and returns it with its wire type.
fn read_id(r: &mut Reader<'_>) -> Result<(u8, Kind, u16), DecodeError> {
    // Property identifiers are Variable Byte Integers, but every defined one is
    // below 0x80, so a first byte outside the table is unknown either way.
    let property = r.u8()?;
    let (kind, mask) = spec(property).ok_or(DecodeError::UnknownProperty(property))?;
    Ok((property, kind, mask))
}

fn read_value<'a>(r: &mut Reader<'a>, kind: Kind) -> Result<Value<'a>, DecodeError> {
    Ok(match kind {
        Kind::Byte => Value::Byte(r.u8()?),
        Kind::U16 => Value::U16(r.u16()?),
        Kind::U32 => Value::U32(r.u32()?),
        Kind::VarInt => Value::VarInt(r.varint()?),
        Kind::Str => Value::Str(r.string()?),
        Kind::Bin => Value::Bin(r.binary()?),
        Kind::Pair => Value::Pair(r.string()?, r.string()?),
    })
}

/// Whether a value is one the specification allows for this property.
fn value_is_valid(property: u8, value: &Value<'_>) -> bool {
    match (property, value) {
        (
            id::PAYLOAD_FORMAT_INDICATOR
            | id::REQUEST_PROBLEM_INFORMATION
            | id::REQUEST_RESPONSE_INFORMATION
            | id::MAXIMUM_QOS
            | id::RETAIN_AVAILABLE
            | id::WILDCARD_SUBSCRIPTION_AVAILABLE
            | id::SUBSCRIPTION_IDENTIFIER_AVAILABLE
            | id::SHARED_SUBSCRIPTION_AVAILABLE,
            Value::Byte(b),
        ) => *b <= 1,
        (id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => {
            *v != 0 && *v as usize <= MAX_REMAINING_LENGTH
        }
        (id::RECEIVE_MAXIMUM | id::TOPIC_ALIAS, Value::U16(v)) => *v != 0,
        (id::MAXIMUM_PACKET_SIZE, Value::U32(v)) => *v != 0,
        // §3.3.2.3.5: the Response Topic is a Topic Name (no wildcards).
        (id::RESPONSE_TOPIC, Value::Str(s)) => validate_topic_name(s).is_ok(),
        _ => true,
    }
}

/// Iterates over the raw entries of a validated property block, yielding
/// each identifier, value and the entry's wire bytes. Stops at the end or
/// at the first malformed entry.
#[derive(Clone)]
struct Entries<'a> {
    r: Reader<'a>,
}

impl<'a> Entries<'a> {
    const fn new(block: &'a [u8]) -> Self {
        Self {
            r: Reader::new(block),
        }
    }
}

impl<'a> Iterator for Entries<'a> {
    type Item = (u8, Value<'a>, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let mut start = self.r.clone();
        let before = self.r.remaining();
        let entry =
            read_id(&mut self.r).and_then(|(p, kind, _)| Ok((p, read_value(&mut self.r, kind)?)));
        match entry {
            Ok((p, v)) => {
                let used = before.saturating_sub(self.r.remaining());
                let raw = start.take(used).unwrap_or_default();
                Some((p, v, raw))
            }
            Err(_) => {
                // Malformed data: end the iteration rather than guess.
                self.r = Reader::new(&[]);
                None
            }
        }
    }
}

/// User Properties (0x26): name/value string pairs, in order, repeatable.
///
/// `Encoded` holds property entries in wire form (`0x26`, string, string, …)
/// that have already been validated, such as a whole property block from a
/// decoded packet; entries of other properties in it are skipped. `Slice` is
/// for properties built in code. Equality compares the pairs, not the form.
#[derive(Clone, Copy)]
pub enum UserProperties<'a> {
    /// Validated wire-format property entries (without the property length).
    Encoded(&'a [u8]),
    /// Pairs built in code.
    Slice(&'a [(&'a str, &'a str)]),
}

impl Default for UserProperties<'_> {
    fn default() -> Self {
        Self::Slice(&[])
    }
}

/// Iterator over [`UserProperties`].
#[derive(Clone)]
pub struct UserPropertiesIter<'a>(UserIterInner<'a>);

#[derive(Clone)]
enum UserIterInner<'a> {
    Encoded(Entries<'a>),
    Slice(core::slice::Iter<'a, (&'a str, &'a str)>),
}

impl<'a> Iterator for UserPropertiesIter<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.0 {
            UserIterInner::Encoded(entries) => entries.find_map(|(_, v, _)| match v {
                Value::Pair(k, v) => Some((k, v)),
                _ => None,
            }),
            UserIterInner::Slice(it) => it.next().copied(),
        }
    }
}

impl<'a> UserProperties<'a> {
    /// The name/value pairs in order.
    pub fn iter(&self) -> UserPropertiesIter<'a> {
        UserPropertiesIter(match *self {
            Self::Encoded(b) => UserIterInner::Encoded(Entries::new(b)),
            Self::Slice(s) => UserIterInner::Slice(s.iter()),
        })
    }

    /// Whether there is no pair.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Bytes [`encode`](Self::encode) writes: the user property entries in
    /// wire form, without a property length.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        match *self {
            Self::Encoded(b) => Ok(Entries::new(b)
                .filter(|(p, _, _)| *p == id::USER_PROPERTY)
                .fold(0, |n, (_, _, raw)| n.saturating_add(raw.len()))),
            Self::Slice(s) => s.iter().try_fold(0usize, |n, (k, v)| {
                add(n, add(1, add(string_len(k)?, string_len(v)?)?)?)
            }),
        }
    }

    /// Writes the user property entries (`0x26`, name, value, …) at the start
    /// of `buf` and returns the number of bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let needed = self.encoded_len()?;
        let out = buf
            .get_mut(..needed)
            .ok_or(EncodeError::BufferTooSmall { needed })?;
        let mut w = Writer::new(out);
        self.write(&mut w)?;
        Ok(w.position())
    }

    /// Writes the entries; the caller has validated them with `encoded_len`.
    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        match *self {
            Self::Encoded(b) => {
                for (_, _, raw) in Entries::new(b).filter(|(p, _, _)| *p == id::USER_PROPERTY) {
                    // Validated entries are copied verbatim: no re-encoding.
                    w.bytes(raw)?;
                }
            }
            Self::Slice(s) => {
                for (k, v) in s {
                    w.u8(id::USER_PROPERTY)?;
                    w.string(k)?;
                    w.string(v)?;
                }
            }
        }
        Ok(())
    }
}

impl PartialEq for UserProperties<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for UserProperties<'_> {}

impl fmt::Debug for UserProperties<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Subscription Identifiers (0x0B) of a PUBLISH sent to a subscriber: one per
/// matching subscription that had one, so possibly several.
///
/// `Encoded` holds validated wire-format property entries (other properties
/// in it are skipped); `Slice` is for values built in code. Equality compares
/// the identifiers, not the form.
#[derive(Clone, Copy)]
pub enum SubscriptionIds<'a> {
    /// Validated wire-format property entries (without the property length).
    Encoded(&'a [u8]),
    /// Identifiers built in code (each 1..=268 435 455).
    Slice(&'a [u32]),
}

impl Default for SubscriptionIds<'_> {
    fn default() -> Self {
        Self::Slice(&[])
    }
}

/// Iterator over [`SubscriptionIds`].
#[derive(Clone)]
pub struct SubscriptionIdsIter<'a>(SubIdIterInner<'a>);

#[derive(Clone)]
enum SubIdIterInner<'a> {
    Encoded(Entries<'a>),
    Slice(core::slice::Iter<'a, u32>),
}

impl Iterator for SubscriptionIdsIter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        match &mut self.0 {
            SubIdIterInner::Encoded(entries) => entries.find_map(|(p, v, _)| match v {
                Value::VarInt(v) if p == id::SUBSCRIPTION_IDENTIFIER => Some(v),
                _ => None,
            }),
            SubIdIterInner::Slice(it) => it.next().copied(),
        }
    }
}

impl<'a> SubscriptionIds<'a> {
    /// The identifiers in order.
    pub fn iter(&self) -> SubscriptionIdsIter<'a> {
        SubscriptionIdsIter(match *self {
            Self::Encoded(b) => SubIdIterInner::Encoded(Entries::new(b)),
            Self::Slice(s) => SubIdIterInner::Slice(s.iter()),
        })
    }

    /// Whether there is no identifier.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// Number of identifiers.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Bytes [`encode`](Self::encode) writes (entries only, no property length).
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        self.iter().try_fold(0usize, |n, v| {
            if !value_is_valid(id::SUBSCRIPTION_IDENTIFIER, &Value::VarInt(v)) {
                return Err(EncodeError::InvalidPropertyValue(
                    id::SUBSCRIPTION_IDENTIFIER,
                ));
            }
            add(n, 1 + varint_len(v as usize))
        })
    }

    /// Writes the Subscription Identifier entries at the start of `buf` and
    /// returns the number of bytes written.
    pub fn encode(&self, buf: &mut [u8]) -> Result<usize, EncodeError> {
        let needed = self.encoded_len()?;
        let out = buf
            .get_mut(..needed)
            .ok_or(EncodeError::BufferTooSmall { needed })?;
        let mut w = Writer::new(out);
        self.write(&mut w)?;
        Ok(w.position())
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), EncodeError> {
        for v in self.iter() {
            w.u8(id::SUBSCRIPTION_IDENTIFIER)?;
            w.varint(v as usize)?;
        }
        Ok(())
    }
}

impl PartialEq for SubscriptionIds<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for SubscriptionIds<'_> {}

impl fmt::Debug for SubscriptionIds<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// The MQTT 5 properties of one packet (or of a will). Every field is `None`
/// or empty unless the packet carried that property; MQTT 3 packets always
/// have `Properties::default()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Properties<'a> {
    /// 0x01 Payload Format Indicator: 0 unspecified bytes, 1 UTF-8 (PUBLISH, will).
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval in seconds (PUBLISH, will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type (PUBLISH, will).
    pub content_type: Option<&'a str>,
    /// 0x08 Response Topic (PUBLISH, will).
    pub response_topic: Option<&'a str>,
    /// 0x09 Correlation Data (PUBLISH, will).
    pub correlation_data: Option<&'a [u8]>,
    /// 0x0B Subscription Identifier of a SUBSCRIBE (single-valued there; a
    /// PUBLISH uses [`subscription_identifiers`](Self::subscription_identifiers)).
    pub subscription_identifier: Option<u32>,
    /// 0x11 Session Expiry Interval in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier (CONNACK).
    pub assigned_client_identifier: Option<&'a str>,
    /// 0x13 Server Keep Alive in seconds (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<&'a str>,
    /// 0x16 Authentication Data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<&'a [u8]>,
    /// 0x17 Request Problem Information, 0 or 1 (CONNECT).
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval in seconds (will).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information, 0 or 1 (CONNECT).
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information (CONNACK).
    pub response_information: Option<&'a str>,
    /// 0x1C Server Reference (CONNACK, DISCONNECT).
    pub server_reference: Option<&'a str>,
    /// 0x1F Reason String (CONNACK, acks, DISCONNECT, AUTH).
    pub reason_string: Option<&'a str>,
    /// 0x21 Receive Maximum, non-zero (CONNECT, CONNACK).
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias, non-zero (PUBLISH).
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS, 0 or 1 (CONNACK).
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available, 0 or 1 (CONNACK).
    pub retain_available: Option<u8>,
    /// 0x27 Maximum Packet Size, non-zero (CONNECT, CONNACK).
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available, 0 or 1 (CONNACK).
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available, 0 or 1 (CONNACK).
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available, 0 or 1 (CONNACK).
    pub shared_subscription_available: Option<u8>,
    /// 0x26 User Properties, in order (every packet with properties).
    pub user_properties: UserProperties<'a>,
    /// 0x0B Subscription Identifiers of a PUBLISH (multi-valued).
    pub subscription_identifiers: SubscriptionIds<'a>,
}

impl Default for Properties<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Properties<'a> {
    /// No properties (the same as `Default`, usable in `const` contexts).
    pub const fn new() -> Self {
        Self {
            payload_format_indicator: None,
            message_expiry_interval: None,
            content_type: None,
            response_topic: None,
            correlation_data: None,
            subscription_identifier: None,
            session_expiry_interval: None,
            assigned_client_identifier: None,
            server_keep_alive: None,
            authentication_method: None,
            authentication_data: None,
            request_problem_information: None,
            will_delay_interval: None,
            request_response_information: None,
            response_information: None,
            server_reference: None,
            reason_string: None,
            receive_maximum: None,
            topic_alias_maximum: None,
            topic_alias: None,
            maximum_qos: None,
            retain_available: None,
            maximum_packet_size: None,
            wildcard_subscription_available: None,
            subscription_identifier_available: None,
            shared_subscription_available: None,
            user_properties: UserProperties::Slice(&[]),
            subscription_identifiers: SubscriptionIds::Slice(&[]),
        }
    }

    /// Whether no property is set.
    pub fn is_empty(&self) -> bool {
        let mut any = false;
        let _ = self.for_each_single(|_, _| {
            any = true;
            Ok::<(), ()>(())
        });
        !any && self.user_properties.is_empty() && self.subscription_identifiers.is_empty()
    }

    /// Calls `f` for every single-valued property that is set, in identifier
    /// order.
    fn for_each_single<E>(
        &self,
        mut f: impl FnMut(u8, Value<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        macro_rules! emit {
            ($field:ident, $id:expr, $variant:ident) => {
                if let Some(v) = self.$field {
                    f($id, Value::$variant(v))?;
                }
            };
        }
        emit!(payload_format_indicator, id::PAYLOAD_FORMAT_INDICATOR, Byte);
        emit!(message_expiry_interval, id::MESSAGE_EXPIRY_INTERVAL, U32);
        emit!(content_type, id::CONTENT_TYPE, Str);
        emit!(response_topic, id::RESPONSE_TOPIC, Str);
        emit!(correlation_data, id::CORRELATION_DATA, Bin);
        emit!(subscription_identifier, id::SUBSCRIPTION_IDENTIFIER, VarInt);
        emit!(session_expiry_interval, id::SESSION_EXPIRY_INTERVAL, U32);
        emit!(
            assigned_client_identifier,
            id::ASSIGNED_CLIENT_IDENTIFIER,
            Str
        );
        emit!(server_keep_alive, id::SERVER_KEEP_ALIVE, U16);
        emit!(authentication_method, id::AUTHENTICATION_METHOD, Str);
        emit!(authentication_data, id::AUTHENTICATION_DATA, Bin);
        emit!(
            request_problem_information,
            id::REQUEST_PROBLEM_INFORMATION,
            Byte
        );
        emit!(will_delay_interval, id::WILL_DELAY_INTERVAL, U32);
        emit!(
            request_response_information,
            id::REQUEST_RESPONSE_INFORMATION,
            Byte
        );
        emit!(response_information, id::RESPONSE_INFORMATION, Str);
        emit!(server_reference, id::SERVER_REFERENCE, Str);
        emit!(reason_string, id::REASON_STRING, Str);
        emit!(receive_maximum, id::RECEIVE_MAXIMUM, U16);
        emit!(topic_alias_maximum, id::TOPIC_ALIAS_MAXIMUM, U16);
        emit!(topic_alias, id::TOPIC_ALIAS, U16);
        emit!(maximum_qos, id::MAXIMUM_QOS, Byte);
        emit!(retain_available, id::RETAIN_AVAILABLE, Byte);
        emit!(maximum_packet_size, id::MAXIMUM_PACKET_SIZE, U32);
        emit!(
            wildcard_subscription_available,
            id::WILDCARD_SUBSCRIPTION_AVAILABLE,
            Byte
        );
        emit!(
            subscription_identifier_available,
            id::SUBSCRIPTION_IDENTIFIER_AVAILABLE,
            Byte
        );
        emit!(
            shared_subscription_available,
            id::SHARED_SUBSCRIPTION_AVAILABLE,
            Byte
        );
        Ok(())
    }

    /// Decodes a property block (Property Length followed by the properties)
    /// for a packet of kind `ctx`, validating it.
    pub(crate) fn decode(r: &mut Reader<'a>, ctx: PropertyContext) -> Result<Self, DecodeError> {
        let len = r.varint()?;
        let block = r.take(to_usize(len))?;
        Self::decode_block(block, ctx)
    }

    /// Decodes and validates the properties of `block` (no length prefix).
    pub fn decode_block(block: &'a [u8], ctx: PropertyContext) -> Result<Self, DecodeError> {
        let mut p = Properties::default();
        // Bit n set once single-valued property n has been seen (ids are < 64).
        let mut seen: u64 = 0;
        let mut has_user_properties = false;
        let mut has_subscription_ids = false;
        let mut r = Reader::new(block);
        while !r.is_empty() {
            let (property, kind, mask) = read_id(&mut r)?;
            if mask & ctx.bit() == 0 {
                return Err(DecodeError::PropertyNotAllowed(property));
            }
            let value = read_value(&mut r, kind)?;
            if !value_is_valid(property, &value) {
                return Err(DecodeError::InvalidPropertyValue(property));
            }
            if property == id::USER_PROPERTY {
                has_user_properties = true;
                continue;
            }
            if property == id::SUBSCRIPTION_IDENTIFIER && ctx == PropertyContext::Publish {
                has_subscription_ids = true;
                continue;
            }
            let bit = 1u64 << property;
            if seen & bit != 0 {
                return Err(DecodeError::DuplicateProperty(property));
            }
            seen |= bit;
            p.set(property, value);
        }
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthenticationDataWithoutMethod);
        }
        if has_user_properties {
            p.user_properties = UserProperties::Encoded(block);
        }
        if has_subscription_ids {
            p.subscription_identifiers = SubscriptionIds::Encoded(block);
        }
        Ok(p)
    }

    /// Stores a single-valued property (whose kind `spec` guarantees).
    fn set(&mut self, property: u8, value: Value<'a>) {
        match (property, value) {
            (id::PAYLOAD_FORMAT_INDICATOR, Value::Byte(v)) => {
                self.payload_format_indicator = Some(v)
            }
            (id::MESSAGE_EXPIRY_INTERVAL, Value::U32(v)) => self.message_expiry_interval = Some(v),
            (id::CONTENT_TYPE, Value::Str(v)) => self.content_type = Some(v),
            (id::RESPONSE_TOPIC, Value::Str(v)) => self.response_topic = Some(v),
            (id::CORRELATION_DATA, Value::Bin(v)) => self.correlation_data = Some(v),
            (id::SUBSCRIPTION_IDENTIFIER, Value::VarInt(v)) => {
                self.subscription_identifier = Some(v)
            }
            (id::SESSION_EXPIRY_INTERVAL, Value::U32(v)) => self.session_expiry_interval = Some(v),
            (id::ASSIGNED_CLIENT_IDENTIFIER, Value::Str(v)) => {
                self.assigned_client_identifier = Some(v)
            }
            (id::SERVER_KEEP_ALIVE, Value::U16(v)) => self.server_keep_alive = Some(v),
            (id::AUTHENTICATION_METHOD, Value::Str(v)) => self.authentication_method = Some(v),
            (id::AUTHENTICATION_DATA, Value::Bin(v)) => self.authentication_data = Some(v),
            (id::REQUEST_PROBLEM_INFORMATION, Value::Byte(v)) => {
                self.request_problem_information = Some(v)
            }
            (id::WILL_DELAY_INTERVAL, Value::U32(v)) => self.will_delay_interval = Some(v),
            (id::REQUEST_RESPONSE_INFORMATION, Value::Byte(v)) => {
                self.request_response_information = Some(v)
            }
            (id::RESPONSE_INFORMATION, Value::Str(v)) => self.response_information = Some(v),
            (id::SERVER_REFERENCE, Value::Str(v)) => self.server_reference = Some(v),
            (id::REASON_STRING, Value::Str(v)) => self.reason_string = Some(v),
            (id::RECEIVE_MAXIMUM, Value::U16(v)) => self.receive_maximum = Some(v),
            (id::TOPIC_ALIAS_MAXIMUM, Value::U16(v)) => self.topic_alias_maximum = Some(v),
            (id::TOPIC_ALIAS, Value::U16(v)) => self.topic_alias = Some(v),
            (id::MAXIMUM_QOS, Value::Byte(v)) => self.maximum_qos = Some(v),
            (id::RETAIN_AVAILABLE, Value::Byte(v)) => self.retain_available = Some(v),
            (id::MAXIMUM_PACKET_SIZE, Value::U32(v)) => self.maximum_packet_size = Some(v),
            (id::WILDCARD_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                self.wildcard_subscription_available = Some(v)
            }
            (id::SUBSCRIPTION_IDENTIFIER_AVAILABLE, Value::Byte(v)) => {
                self.subscription_identifier_available = Some(v)
            }
            (id::SHARED_SUBSCRIPTION_AVAILABLE, Value::Byte(v)) => {
                self.shared_subscription_available = Some(v)
            }
            // `spec` pairs every identifier with exactly one kind, and the
            // multi-valued ones never reach here.
            _ => {}
        }
    }

    /// Length of the properties (without the Property Length prefix) for a
    /// packet of kind `ctx`, after checking that each one is allowed there
    /// and has a valid value.
    pub fn encoded_len(&self, ctx: PropertyContext) -> Result<usize, EncodeError> {
        let mut len = 0usize;
        self.for_each_single(|property, value| {
            // The single-valued Subscription Identifier belongs to SUBSCRIBE;
            // a PUBLISH carries `subscription_identifiers` instead.
            if !is_allowed(property, ctx)
                || (property == id::SUBSCRIPTION_IDENTIFIER && ctx != PropertyContext::Subscribe)
            {
                return Err(EncodeError::PropertyNotAllowed(property));
            }
            if !value_is_valid(property, &value) {
                return Err(EncodeError::InvalidPropertyValue(property));
            }
            let value_len = match value {
                Value::Byte(_) => 1,
                Value::U16(_) => 2,
                Value::U32(_) => 4,
                Value::VarInt(v) => varint_len(v as usize),
                Value::Str(s) => string_len(s)?,
                Value::Bin(b) => binary_len(b)?,
                Value::Pair(k, v) => add(string_len(k)?, string_len(v)?)?,
            };
            len = add(len, 1 + value_len)?;
            Ok(())
        })?;
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            return Err(EncodeError::AuthenticationDataWithoutMethod);
        }
        let sub_ids = self.subscription_identifiers.encoded_len()?;
        if sub_ids > 0 && ctx != PropertyContext::Publish {
            return Err(EncodeError::PropertyNotAllowed(id::SUBSCRIPTION_IDENTIFIER));
        }
        len = add(len, sub_ids)?;
        add(len, self.user_properties.encoded_len()?)
    }

    /// Length of the whole property block: Property Length + properties.
    pub(crate) fn block_len(&self, ctx: PropertyContext) -> Result<usize, EncodeError> {
        let len = self.encoded_len(ctx)?;
        if len > MAX_REMAINING_LENGTH {
            return Err(EncodeError::PacketTooLarge);
        }
        add(varint_len(len), len)
    }

    /// Writes the property block (Property Length + properties). The caller
    /// has validated it with `block_len` for the same context.
    pub(crate) fn write(
        &self,
        ctx: PropertyContext,
        w: &mut Writer<'_>,
    ) -> Result<(), EncodeError> {
        w.varint(self.encoded_len(ctx)?)?;
        self.for_each_single(|property, value| {
            w.u8(property)?;
            match value {
                Value::Byte(v) => w.u8(v),
                Value::U16(v) => w.u16(v),
                Value::U32(v) => w.u32(v),
                Value::VarInt(v) => w.varint(v as usize),
                Value::Str(s) => w.string(s),
                Value::Bin(b) => w.binary(b),
                Value::Pair(k, v) => {
                    w.string(k)?;
                    w.string(v)
                }
            }
        })?;
        self.subscription_identifiers.write(w)?;
        self.user_properties.write(w)
    }
}
