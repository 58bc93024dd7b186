//! The async driver over `embedded-io-async` 0.7.
//!
//! Waiting is a race between the transport's `read` and the caller's async
//! [`DelayNs`] until the next timer or `until`; whichever finishes first wins
//! and the other is dropped. The transport's `read` must therefore be
//! cancel-safe (no bytes lost when the future is dropped before completing),
//! as embassy-net's `TcpSocket` and tokio's sockets are.

use core::future::{Future, poll_fn};
use core::pin::pin;
use core::task::Poll;

use embedded_hal_async::delay::DelayNs;
use embedded_io_async::{Read, Write};

use super::{Clock, DriverError, wait_ms};
use crate::client::{Client, Event, State};

/// Drives a [`Client`] over an async transport. Holds only the transmit
/// buffer (at least `M` + 10 bytes, and large enough for CONNECT).
pub struct Async<'b> {
    tx: &'b mut [u8],
}

enum Either<A, B> {
    First(A),
    Second(B),
}

/// Polls both futures; the first to finish wins, the other is dropped.
async fn select<A: Future, B: Future>(a: A, b: B) -> Either<A::Output, B::Output> {
    let mut a = pin!(a);
    let mut b = pin!(b);
    poll_fn(|cx| {
        if let Poll::Ready(x) = a.as_mut().poll(cx) {
            return Poll::Ready(Either::First(x));
        }
        if let Poll::Ready(x) = b.as_mut().poll(cx) {
            return Poll::Ready(Either::Second(x));
        }
        Poll::Pending
    })
    .await
}

impl<'b> Async<'b> {
    /// A driver writing through `tx`.
    pub fn new(tx: &'b mut [u8]) -> Self {
        Self { tx }
    }

    /// Runs the connection until there is an event (returned), the clock
    /// reaches `until` (`Ok(None)`), or the connection ends (an error; the
    /// client has scheduled its reconnect, drop the transport).
    ///
    /// Returns `Ok(None)` at once when the client is [`State::Stopped`].
    pub async fn poll<'c, 'a, T, C, D, const N: usize, const M: usize>(
        &mut self,
        client: &'c mut Client<'a, N, M>,
        io: &mut T,
        clock: &C,
        delay: &mut D,
        until: u64,
    ) -> Result<Option<Event<'c>>, DriverError<T::Error>>
    where
        T: Read + Write,
        C: Clock + ?Sized,
        D: DelayNs,
    {
        loop {
            let now = clock.now_ms();
            client.handle_timeout(now)?;
            self.flush(client, io, now).await?;
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
            let wait = wait_ms(now, client.poll_timeout(), until);
            let space = client.rx_buffer();
            if space.is_empty() {
                // Waiting for our own acknowledgements to go out; they will
                // on the next turn. Never spin without yielding.
                delay.delay_ms(1).await;
                continue;
            }
            match select(io.read(space), delay.delay_ms(wait)).await {
                Either::First(Ok(0)) => {
                    client.on_transport_closed(clock.now_ms());
                    return Err(DriverError::Closed);
                }
                Either::First(Ok(n)) => client.rx_commit(n),
                Either::First(Err(e)) => {
                    client.on_transport_closed(clock.now_ms());
                    return Err(DriverError::Io(e));
                }
                Either::Second(()) => {}
            }
        }
        Ok(client.take_event())
    }

    /// Sends DISCONNECT (after pending acknowledgements) and stops the client.
    pub async fn disconnect<'a, T, C, const N: usize, const M: usize>(
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
        self.flush(client, io, clock.now_ms()).await
    }

    /// Writes everything the client has to send.
    async fn flush<'a, T: Write, const N: usize, const M: usize>(
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
            if let Err(e) = io.write_all(&self.tx[..n]).await {
                client.on_transport_closed(now);
                return Err(DriverError::Io(e));
            }
            wrote = true;
        }
        if wrote && let Err(e) = io.flush().await {
            client.on_transport_closed(now);
            return Err(DriverError::Io(e));
        }
        Ok(())
    }
}
