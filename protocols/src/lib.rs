//! Protocol code shared by the Tether gateway and firmware: sans-IO, `no_std`,
//! no allocation in the codec, no `unsafe`, and no panics on any input.
//!
//! * [`mqtt`]: the MQTT 3.1 / 3.1.1 / 5.0 codec. [`mqtt::frame_len`] and
//!   [`mqtt::decode`] turn bytes into zero-copy [`mqtt::Packet`]s;
//!   [`mqtt::Packet::encode`] writes them into a caller's buffer. Used by the
//!   gateway (server side) and the firmware (client side).
//! * [`topic`]: topic name and filter validation, filter matching, shared
//!   subscriptions (`$share/{group}/{filter}`).
//! * [`mapping`]: the lossless mapping between MQTT topics and AMQP routing
//!   keys of the `amq.topic` exchange, through which MQTT traffic is routed.
//!
//! Features: `alloc` adds `String`-returning conveniences to [`mapping`];
//! `std` implies `alloc`. Neither is needed by the codec.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod mapping;
pub mod mqtt;
pub mod topic;
