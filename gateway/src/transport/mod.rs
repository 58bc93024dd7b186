//! The byte streams a client connection runs over: plain TCP, TLS, and MQTT
//! over WebSocket (plain or TLS).
//!
//! The MQTT and AMQP connection tasks are generic over [`Reader`] and
//! [`Writer`], the four non-blocking operations their loops are built on
//! (`readable`, `try_read_buf`, `writable`, `try_write`) plus the few awaiting
//! ones the handshakes use. The TCP halves implement them by calling tokio's
//! own methods, so the plain path compiles to exactly what it was: no extra
//! state per connection, no indirection. Every other stream goes through one
//! adapter, [`split`], over an `AsyncBufRead + AsyncWrite` stream.
//!
//! * [`tls`]: certificates and keys, the rustls configuration, reload on
//!   SIGHUP, handshakes with a timeout, and the client certificate identity.
//! * [`websocket`]: the HTTP upgrade and a byte stream over binary frames.
//!
//! This room moves bytes and establishes who the peer is; it knows nothing of
//! MQTT or AMQP packets.

pub mod tls;
pub mod websocket;

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncBufRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Longest a TLS or WebSocket close may wait for the peer to take it.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Who a client certificate says the peer is, and what that identity stands
/// for (see `[tls]` `identity`, `use_identity_as_username`,
/// `use_identity_as_client_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    /// The certificate's common name or subject alternative name.
    pub name: String,
    /// The name is the client's username (ACL `user` and `%u`); the
    /// certificate authenticates it, CONNECT credentials are ignored.
    pub as_username: bool,
    /// The name is the client's id (ACL `client_id` and `%c`).
    pub as_client_id: bool,
}

impl CertIdentity {
    /// The username the certificate establishes, if it stands for one.
    pub fn username(&self) -> Option<&str> {
        self.as_username.then_some(self.name.as_str())
    }

    /// The client id the certificate establishes, if it stands for one.
    pub fn client_id(&self) -> Option<&str> {
        self.as_client_id.then_some(self.name.as_str())
    }
}

/// The read side of a client connection.
pub trait Reader: Send {
    /// Reads into the spare capacity of `buf`, waiting for data; `Ok(0)` at
    /// the end of the stream.
    fn read_buf<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;

    /// Waits until a read would not block (data, the end, or an error),
    /// without taking anything and without a buffer.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Reads what is available now into the spare capacity of `buf`;
    /// `WouldBlock` when nothing is.
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// The verified client certificate's identity, when the transport has one.
    fn identity(&self) -> Option<&CertIdentity> {
        None
    }
}

/// The write side of a client connection.
///
/// `try_write` may keep bytes it accepted until they reach the network and
/// report them then: a caller that got `WouldBlock` must call it again with
/// the same bytes at the front of its buffer (it may have appended more), as
/// the connection loops do anyway.
pub trait Writer: Send {
    /// Waits until `try_write` may make progress.
    fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_;

    /// Writes a prefix of `buf` without waiting; how many bytes were written,
    /// or `WouldBlock`.
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;

    /// Writes all of `buf` (the bytes `try_write` already holds excepted) and
    /// flushes.
    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a;

    /// Flushes and closes the write direction.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_;
}

impl Reader for OwnedReadHalf {
    fn read_buf<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        AsyncReadExt::read_buf(self, buf)
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        OwnedReadHalf::readable(self)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        OwnedReadHalf::try_read_buf(self, buf)
    }
}

impl Writer for OwnedWriteHalf {
    fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        OwnedWriteHalf::writable(self)
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        OwnedWriteHalf::try_write(self, buf)
    }

    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        AsyncWriteExt::write_all(self, buf)
    }

    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        AsyncWriteExt::shutdown(self)
    }
}

/// Splits a buffered stream (TLS, WebSocket) into halves for the connection
/// loops, which poll reading and writing from the one connection task.
///
/// The halves share the stream behind a mutex that is never contended (one
/// task polls both, one at a time); it is taken once per read or write call,
/// not per message.
pub fn split<S>(stream: S, identity: Option<CertIdentity>) -> (StreamReader<S>, StreamWriter<S>)
where
    S: AsyncBufRead + AsyncWrite + Unpin + Send,
{
    let shared = Arc::new(Mutex::new(stream));
    (
        StreamReader {
            stream: shared.clone(),
            identity: identity.map(Box::new),
        },
        StreamWriter {
            stream: shared,
            held: 0,
        },
    )
}

/// The read half made by [`split`].
#[derive(Debug)]
pub struct StreamReader<S> {
    stream: Arc<Mutex<S>>,
    identity: Option<Box<CertIdentity>>,
}

/// The write half made by [`split`].
#[derive(Debug)]
pub struct StreamWriter<S> {
    stream: Arc<Mutex<S>>,
    /// Bytes accepted by the stream but not yet flushed to the network; the
    /// caller still has them at the front of its buffer.
    held: usize,
}

impl<S: AsyncBufRead + AsyncWrite + Unpin + Send> StreamReader<S> {
    fn poll_read_into(&self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        let mut stream = self.stream.lock();
        let mut stream = Pin::new(&mut *stream);
        let available = match stream.as_mut().poll_fill_buf(cx) {
            Poll::Ready(Ok(data)) => data,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let n = available.len().min(buf.capacity() - buf.len());
        buf.extend_from_slice(&available[..n]);
        stream.consume(n);
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncBufRead + AsyncWrite + Unpin + Send> Reader for StreamReader<S> {
    fn read_buf<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        poll_fn(move |cx| self.poll_read_into(cx, buf))
    }

    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        poll_fn(move |cx| {
            let mut stream = self.stream.lock();
            Pin::new(&mut *stream).poll_fill_buf(cx).map_ok(|_| ())
        })
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_read_into(&mut cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn identity(&self) -> Option<&CertIdentity> {
        self.identity.as_deref()
    }
}

impl<S: AsyncBufRead + AsyncWrite + Unpin + Send> StreamWriter<S> {
    fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream.lock()).poll_flush(cx)
    }
}

impl<S: AsyncBufRead + AsyncWrite + Unpin + Send> Writer for StreamWriter<S> {
    fn writable(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        // Everything buffered reached the network: the stream takes more.
        poll_fn(move |cx| self.poll_flush(cx))
    }

    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut cx = Context::from_waker(Waker::noop());
        if self.held > 0 {
            return match self.poll_flush(&mut cx) {
                Poll::Ready(Ok(())) => Ok(std::mem::take(&mut self.held)),
                Poll::Ready(Err(e)) => Err(e),
                Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
            };
        }
        let n = match Pin::new(&mut *self.stream.lock()).poll_write(&mut cx, buf) {
            Poll::Ready(r) => r?,
            Poll::Pending => return Err(io::ErrorKind::WouldBlock.into()),
        };
        match self.poll_flush(&mut cx) {
            Poll::Ready(Ok(())) => Ok(n),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => {
                // Accepted but not sent: reported once it is (see the trait).
                self.held = n;
                Err(io::ErrorKind::WouldBlock.into())
            }
        }
    }

    fn write_all<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> impl Future<Output = io::Result<()>> + Send + 'a {
        let skip = std::mem::take(&mut self.held).min(buf.len());
        let mut rest = &buf[skip..];
        poll_fn(move |cx| {
            let mut stream = self.stream.lock();
            let mut stream = Pin::new(&mut *stream);
            while !rest.is_empty() {
                match stream.as_mut().poll_write(cx, rest) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => rest = &rest[n..],
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            stream.poll_flush(cx)
        })
    }

    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>> + Send + '_ {
        // Closing says goodbye in-band (TLS close_notify, a WebSocket close
        // frame), which a peer that stopped reading would hold up forever.
        let close = poll_fn(move |cx| Pin::new(&mut *self.stream.lock()).poll_shutdown(cx));
        async move {
            tokio::time::timeout(SHUTDOWN_TIMEOUT, close)
                .await
                .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
        }
    }
}
