//! `tether-firmware`: a `no_std` MQTT publisher for microcontrollers that
//! never allocates, never blocks forever and does not lose readings while the
//! link is down (within a capacity you choose).
//!
//! The map, from the inside out:
//!
//! * [`outbox`]: [`Outbox<N, M>`](outbox::Outbox), a bounded queue of up to
//!   `N` messages of up to `M` bytes (topic and payload). Readings wait there
//!   while the device is offline and drain in order after reconnecting; what
//!   happens when it is full is an explicit [`OverflowPolicy`](outbox::OverflowPolicy),
//!   and every drop is counted.
//! * [`backoff`]: bounded exponential backoff with jitter, seeded by the caller.
//! * [`client`]: the sans-IO MQTT client core. It is fed received bytes and the
//!   time (`now`, in milliseconds from any monotonic clock) and hands back the
//!   bytes to send and the next time it must be woken. It opens the session
//!   (CONNECT with credentials and a will), publishes the outbox at QoS 0/1,
//!   subscribes to commands, keeps the connection alive, resends unacknowledged
//!   QoS 1 messages with DUP after reconnecting to a persistent session, and
//!   closes cleanly. MQTT 3.1.1 by default; MQTT 5 with the `v5` feature.
//! * [`driver`]: two thin loops around the core: [`driver::Async`] over
//!   `embedded-io-async` (what embassy-net's `TcpSocket` implements) and
//!   [`driver::Blocking`] over `embedded-io`. They own no protocol logic.
//! * [`sensor`]: a BME280 driver on `embedded-hal` 1.0 (integer compensation
//!   from the datasheet, no floating point), a simulated BME280 bus for
//!   emulators and tests, and JSON telemetry written into a caller's buffer on
//!   the topics the gateway's examples and rules use
//!   (`sensors/{device}/telemetry`, commands on `devices/{device}/cmd`).
//!
//! Nothing here touches hardware directly: sockets, UARTs, I²C buses, clocks
//! and delays come in through traits, so the same code runs in host tests, in
//! QEMU and on a board.
//!
//! ```
//! use tether_firmware::client::{Client, Config, Event};
//! use tether_firmware::protocols::mqtt::QoS;
//!
//! let mut rx = [0u8; 256];
//! let mut tx = [0u8; 256];
//! // 32 readings of up to 128 bytes each (topic + payload) while offline.
//! let mut client: Client<'_, 32, 128> =
//!     Client::new(Config::new("d1").with_commands("devices/d1/cmd"), &mut rx);
//! client
//!     .publish("sensors/d1/telemetry", br#"{"seq":1}"#, QoS::AtLeastOnce)
//!     .unwrap();
//!
//! // The transport is up (TCP connected, UART ready...): the core writes CONNECT.
//! let now = 0;
//! client.on_transport_open(now);
//! let n = client.poll_transmit(now, &mut tx).unwrap();
//! assert_eq!(tx[0] >> 4, 1, "CONNECT");
//! # let _ = n;
//! // Received bytes go in; events come out.
//! client.handle_input(&[0x20, 0x02, 0x00, 0x00]); // CONNACK accepted
//! assert!(matches!(
//!     client.poll_event(now),
//!     Ok(Some(Event::Connected { session_present: false }))
//! ));
//! // Now the queued reading (and the SUBSCRIBE) go out.
//! let n = client.poll_transmit(now, &mut tx).unwrap();
//! assert!(n > 0);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backoff;
pub mod client;
pub mod driver;
pub mod outbox;
pub mod sensor;

/// The MQTT codec the firmware speaks, re-exported so board crates need one dependency.
pub use tether_protocols as protocols;
