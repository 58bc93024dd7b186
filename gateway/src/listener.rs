//! Accepting TCP connections: the accept loop every front end shares, with a
//! connection count and limit. A connection over the limit is still handed to
//! its front end (marked as such), so the client is refused in its own
//! protocol's terms (CONNACK, connection.close) rather than by a reset.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Open connections of one front end, and their limit.
#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    /// Accepted since start (over the limit included).
    accepted: AtomicU64,
    max: usize,
}

impl Connections {
    /// A counter allowing `max` simultaneous connections.
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
            max,
        })
    }

    /// Connections open now.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since start, those over the limit included.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Counts a new connection: its slot, and whether it is over the limit.
    pub fn admit(self: &Arc<Self>) -> (Slot, bool) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        let over_limit = self.open.fetch_add(1, Ordering::Relaxed) >= self.max;
        (Slot(self.clone()), over_limit)
    }
}

/// One counted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Slot(Arc<Connections>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until `shutdown`, spawning `handle(stream, peer, slot,
/// over_limit)` for each on `tasks`.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    protocol: &'static str,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    connections: Arc<Connections>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Slot, bool) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let (slot, over_limit) = connections.admit();
                tasks.spawn(handle(stream, peer, slot, over_limit));
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(protocol, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
