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

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::MqttConfig;
use crate::core::Core;
use crate::listener::{Connections, accept_loop};

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
    connections: Arc<Connections>,
}

impl Context {
    /// Shared state for the MQTT listener.
    pub fn new(
        core: Arc<Core>,
        config: MqttConfig,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        let connections = Connections::new(config.max_connections);
        core.metrics
            .track_connections(crate::metrics::Protocol::Mqtt, connections.clone());
        Arc::new(Context {
            core,
            config,
            shutdown,
            tasks,
            connections,
        })
    }

    /// Open MQTT connections.
    pub fn connection_count(&self) -> usize {
        self.connections.count()
    }
}

/// Accepts MQTT connections on `listener` until shutdown.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let handler_ctx = ctx.clone();
    accept_loop(
        listener,
        "mqtt",
        ctx.shutdown.clone(),
        ctx.tasks.clone(),
        ctx.connections.clone(),
        move |stream, peer, slot, over_limit| {
            connection::run(stream, peer, handler_ctx.clone(), slot, over_limit)
        },
    )
    .await;
}
