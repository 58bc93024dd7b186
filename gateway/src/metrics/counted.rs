//! An HTTP listener wrapper that counts connections (open and accepted) and
//! the bytes read and written, for the `http` series. It wraps any axum
//! [`Listener`], so it composes with other wrappers.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{Count, Metrics, Protocol};
use crate::listener::{Connections, Slot};

/// A listener whose connections are counted as [`Protocol::Http`].
#[derive(Debug)]
pub struct CountedListener<L> {
    inner: L,
    metrics: Arc<Metrics>,
    connections: Arc<Connections>,
}

impl<L> CountedListener<L> {
    /// Wraps `inner`, registering its connection counter with `metrics`.
    pub fn new(inner: L, metrics: Arc<Metrics>) -> Self {
        let connections = Connections::new(usize::MAX);
        metrics.track_connections(Protocol::Http, connections.clone());
        CountedListener {
            inner,
            metrics,
            connections,
        }
    }
}

impl<L: Listener> Listener for CountedListener<L> {
    type Io = CountedIo<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (io, addr) = self.inner.accept().await;
        let (slot, _) = self.connections.admit();
        let io = CountedIo {
            inner: io,
            metrics: self.metrics.clone(),
            _slot: slot,
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A counted connection: its bytes go to the `http` series, and it holds its
/// place in the open-connection count until dropped.
#[derive(Debug)]
pub struct CountedIo<T> {
    inner: T,
    metrics: Arc<Metrics>,
    _slot: Slot,
}

impl<T: AsyncRead + Unpin> AsyncRead for CountedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let n = (buf.filled().len() - before) as u64;
            self.metrics.add(Protocol::Http, Count::BytesReceived, n);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CountedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            self.metrics.add(Protocol::Http, Count::BytesSent, n as u64);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.metrics.add(Protocol::Http, Count::BytesSent, n as u64);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
