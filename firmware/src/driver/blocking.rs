//! The blocking driver over `embedded-io` 0.7.
//!
//! `Read::read` blocks until data arrives, which would starve the keepalive;
//! so the transport must also implement [`ReadReady`], and the driver only
//! reads when data is waiting. In between it sleeps in short slices with the
//! caller's [`DelayNs`] until the next timer, the caller's `until`, or input.

use embedded_hal::delay::DelayNs;
use embedded_io::{Read, ReadReady, Write};

use super::{Clock, DriverError, wait_ms};
use crate::client::{Client, Event, State};

/// Drives a [`Client`] over a blocking transport. Holds only the transmit
/// buffer (at least `M` + 10 bytes, and large enough for CONNECT).
pub struct Blocking<'b> {
    tx: &'b mut [u8],
    poll_interval_ms: u32,
}

impl<'b> Blocking<'b> {
    /// A driver writing through `tx`, checking for input every millisecond.
    pub fn new(tx: &'b mut [u8]) -> Self {
        Self {
            tx,
            poll_interval_ms: 1,
        }
    }

    /// Sets how long to sleep between checks for input (at least 1 ms).
    pub fn with_poll_interval(mut self, ms: u32) -> Self {
        self.poll_interval_ms = ms.max(1);
        self
    }

    /// Runs the connection until there is an event (returned), the clock
    /// reaches `until` (`Ok(None)`), or the connection ends (an error; the
    /// client has scheduled its reconnect, drop the transport).
    ///
    /// Returns `Ok(None)` at once when the client is [`State::Stopped`].
    pub fn poll<'c, 'a, T, C, D, const N: usize, const M: usize>(
        &mut self,
        client: &'c mut Client<'a, N, M>,
        io: &mut T,
        clock: &C,
        delay: &mut D,
        until: u64,
    ) -> Result<Option<Event<'c>>, DriverError<T::Error>>
    where
        T: Read + Write + ReadReady,
        C: Clock + ?Sized,
        D: DelayNs,
    {
        loop {
            let now = clock.now_ms();
            client.handle_timeout(now)?;
            self.flush(client, io, now)?;
            match client.state() {
                State::Stopped => return Ok(None),
                State::Disconnected => return Err(DriverError::Closed),
                _ => {}
            }
            if client.poll_input(now)? {
                break;
            }
            if now >= until {
                return Ok(None);
            }
            let ready = match io.read_ready() {
                Ok(ready) => ready,
                Err(e) => {
                    client.on_transport_closed(now);
                    return Err(DriverError::Io(e));
                }
            };
            let space = client.rx_buffer();
            if ready && !space.is_empty() {
                match io.read(space) {
                    Ok(0) => {
                        client.on_transport_closed(now);
                        return Err(DriverError::Closed);
                    }
                    Ok(n) => client.rx_commit(n),
                    Err(e) => {
                        client.on_transport_closed(now);
                        return Err(DriverError::Io(e));
                    }
                }
            } else {
                let wait = wait_ms(now, client.poll_timeout(), until);
                if wait > 0 {
                    delay.delay_ms(wait.min(self.poll_interval_ms));
                }
            }
        }
        Ok(client.take_event())
    }

    /// Sends DISCONNECT (after pending acknowledgements) and stops the client.
    pub fn disconnect<'a, T, C, const N: usize, const M: usize>(
        &mut self,
        client: &mut Client<'a, N, M>,
        io: &mut T,
        clock: &C,
    ) -> Result<(), DriverError<T::Error>>
    where
        T: Write,
        C: Clock + ?Sized,
    {
        client.disconnect();
        self.flush(client, io, clock.now_ms())
    }

    /// Writes everything the client has to send.
    fn flush<'a, T: Write, const N: usize, const M: usize>(
        &mut self,
        client: &mut Client<'a, N, M>,
        io: &mut T,
        now: u64,
    ) -> Result<(), DriverError<T::Error>> {
        let mut wrote = false;
        loop {
            let n = client.poll_transmit(now, self.tx)?;
            if n == 0 {
                break;
            }
            if let Err(e) = io.write_all(&self.tx[..n]) {
                client.on_transport_closed(now);
                return Err(DriverError::Io(e));
            }
            wrote = true;
        }
        if wrote && let Err(e) = io.flush() {
            client.on_transport_closed(now);
            return Err(DriverError::Io(e));
        }
        Ok(())
    }
}
