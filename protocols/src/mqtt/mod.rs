//! MQTT 3.1, 3.1.1 and 5.0 codec: zero-copy decoding and encoding into
//! caller-provided buffers, with no allocation and no panics on any input.
//!
//! * [`frame_len`] peeks at a fixed header to learn how long a packet is.
//! * [`decode`] turns bytes into a [`Packet`] borrowing from them.
//! * [`Packet::encoded_len`] and [`Packet::encode`] write a packet back
//!   (per-type helpers such as [`Publish::encode`] skip the enum).
//!
//! The decoder enforces the specifications' well-formedness rules and
//! reports each violation as its own [`DecodeError`] variant, with the MQTT 5
//! reason code to answer with ([`DecodeError::reason_code`]). The encoder
//! refuses whatever the decoder would refuse, so encoding then decoding gives
//! back an equal packet. What the codec does not judge is session state:
//! whether a packet identifier is in use, a Topic Alias is known, a second
//! CONNECT arrived, or a client sent a property only a server may send
//! (e.g. a Subscription Identifier on a client's PUBLISH) is the caller's call.

mod connect;
mod decode;
mod disconnect;
mod encode;
mod error;
mod packet;
pub mod properties;
mod publish;
mod reason;
mod subscribe;

pub use connect::{ConnAck, Connect, Will};
pub use decode::{decode, frame_len};
pub use disconnect::{Auth, Disconnect};
pub use error::{DecodeError, EncodeError};
pub use packet::{MAX_REMAINING_LENGTH, Packet, PacketType, ProtocolVersion, QoS};
pub use properties::{
    Properties, PropertyContext, SubscriptionIds, SubscriptionIdsIter, UserProperties,
    UserPropertiesIter,
};
pub use publish::{PubResponse, Publish};
pub use reason::{ConnectReturnCode, ReasonCode};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscribeFilters, SubscribeFiltersIter, SubscriptionOptions,
    UnsubAck, Unsubscribe, UnsubscribeFilters, UnsubscribeFiltersIter,
};

/// Adds `encoded_len(version)` / `encode(version, buf)` to packet structs
/// whose packet type is fixed, so callers need not wrap them in [`Packet`].
macro_rules! encode_methods {
    ($($ty:ident),*) => {$(
        impl $ty<'_> {
            /// Exact encoded size in `version`, after checking the packet is encodable.
            pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
                encode::encoded_len(self, version)
            }

            /// Encodes at the start of `buf`; returns the number of bytes written.
            pub fn encode(
                &self,
                version: ProtocolVersion,
                buf: &mut [u8],
            ) -> Result<usize, EncodeError> {
                encode::encode(self, version, buf)
            }
        }
    )*};
}

encode_methods!(
    ConnAck,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);
