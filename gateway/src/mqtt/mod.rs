//! The MQTT 3.1, 3.1.1 and 5.0 front end: one task per connection, translating
//! packets into core operations and core deliveries into packets.
//!
//! * [`serve`]: the accept loop and connection limit.
//! * `connection`: the connection task: CONNECT handshake, the I/O loop
//!   (reads, coalesced writes, keepalive, takeover, shutdown), and the end.
//! * `inbound`: what the client sends (PUBLISH, SUBSCRIBE, acks, DISCONNECT).
//! * `outbound`: what the client receives (pulling from core queues, PUBLISH
//!   encoding, in-flight window, resend on resume).
//! * `will`: the will message kept for an abnormal end.
//!
//! The front end owns nothing another protocol would need: routing, queues,
//! retained messages and sessions live in [`crate::core`].

mod connection;
mod inbound;
mod outbound;
mod will;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::MqttConfig;
use crate::core::Core;

/// What every MQTT connection task shares.
#[derive(Debug)]
pub struct Context {
    /// The core.
    pub core: Arc<Core>,
    /// `[mqtt]` settings.
    pub config: MqttConfig,
    /// Cancelled when the gateway stops.
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
    connections: AtomicUsize,
}

impl Context {
    /// Shared state for the MQTT listener.
    pub fn new(
        core: Arc<Core>,
        config: MqttConfig,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        Arc::new(Context {
            core,
            config,
            shutdown,
            tasks,
            connections: AtomicUsize::new(0),
        })
    }

    /// Open MQTT connections.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Counts a connection for as long as it lives.
struct ConnectionSlot(Arc<Context>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts MQTT connections on `listener` until shutdown.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    loop {
        let accepted = tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let over_limit =
                    ctx.connections.fetch_add(1, Ordering::Relaxed) >= ctx.config.max_connections;
                let slot = ConnectionSlot(ctx.clone());
                ctx.tasks
                    .spawn(connection::run(stream, peer, ctx.clone(), slot, over_limit));
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!(error = %e, "mqtt accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
