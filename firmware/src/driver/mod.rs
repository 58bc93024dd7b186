//! Drivers: the thin loops that move bytes between a transport and the
//! [client core](crate::client) and tell it the time.
//!
//! * [`Blocking`] runs over `embedded-io` [`Read`](embedded_io::Read) +
//!   [`Write`](embedded_io::Write) + [`ReadReady`](embedded_io::ReadReady)
//!   (a polled UART, a `std` socket in tests) and waits with a blocking
//!   `embedded-hal` [`DelayNs`](embedded_hal::delay::DelayNs).
//! * [`Async`] runs over `embedded-io-async` [`Read`](embedded_io_async::Read) +
//!   [`Write`](embedded_io_async::Write) (embassy-net's `TcpSocket`, tokio in
//!   tests via `embedded-io-adapters`) and waits with an async
//!   `embedded-hal-async` [`DelayNs`](embedded_hal_async::delay::DelayNs).
//!
//! Both have the same shape: `poll(client, io, clock, delay, until)` writes
//! what the client has to send, reads what arrived, and returns the next
//! [`Event`](crate::client::Event), or `None` once `until` (a time from the
//! same [`Clock`]) has come — so the application can take a reading and queue
//! it, then poll again. Neither opens transports: the application connects
//! (TCP, Wi-Fi...), calls [`Client::on_transport_open`](crate::client::Client::on_transport_open),
//! and on an error drops the transport and reconnects at
//! [`Client::reconnect_at`](crate::client::Client::reconnect_at).
//! Neither owns protocol logic or buffers other than the transmit buffer the
//! caller lends it.

mod asynch;
mod blocking;

pub use asynch::Async;
pub use blocking::Blocking;

use crate::client::ConnectionError;

/// A monotonic millisecond clock (e.g. `embassy_time::Instant::now().as_millis()`,
/// a SysTick counter, or `std::time::Instant` in tests).
pub trait Clock {
    /// Milliseconds since an arbitrary fixed origin; never goes backwards.
    fn now_ms(&self) -> u64;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Why a driver's `poll` stopped the connection. In every case the client
/// has been told and has scheduled its next attempt; drop the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverError<E> {
    /// The transport failed.
    Io(E),
    /// The peer closed the transport (or the client has no open connection).
    Closed,
    /// The client ended the connection (refusal, malformed input, timeout...).
    Connection(ConnectionError),
}

impl<E: core::fmt::Debug> core::fmt::Display for DriverError<E> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Io(e) => write!(f, "transport error: {e:?}"),
            Self::Closed => f.write_str("connection closed"),
            Self::Connection(e) => write!(f, "{e}"),
        }
    }
}

impl<E: core::fmt::Debug> core::error::Error for DriverError<E> {}

impl<E> From<ConnectionError> for DriverError<E> {
    fn from(e: ConnectionError) -> Self {
        Self::Connection(e)
    }
}

/// Longest single wait, so a far-away `until` cannot overflow a delay.
const MAX_WAIT_MS: u64 = 60_000;

/// How long to wait at `now` before something is due: the earlier of the
/// client's next timer and `until`, capped at [`MAX_WAIT_MS`].
fn wait_ms(now: u64, wake: Option<u64>, until: u64) -> u32 {
    let wake = wake.map_or(until, |w| w.min(until));
    // Fits: capped at MAX_WAIT_MS.
    wake.saturating_sub(now).min(MAX_WAIT_MS) as u32
}
