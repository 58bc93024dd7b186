//! The MQTT 3.1, 3.1.1 and 5.0 front end: one task per connection, translating
//! packets into core operations and core deliveries into packets.
//!
//! * [`serve`]: the accept loop and connection limit; [`serve_tls`] and
//!   [`serve_ws`] the same over TLS and WebSocket (see [`crate::transport`]),
//!   sharing the limit.
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
pub(crate) use inbound::publish_message;
mod outbound;
mod will;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::MqttConfig;
use crate::core::Core;
use crate::listener::{Connections, accept_loop};
use crate::transport::tls::Tls;
use crate::transport::{split, websocket};

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

/// Accepts MQTT over TLS (mqtts) on `listener` until shutdown. The handshake
/// runs in each connection's task, bounded by `tls.handshake_timeout`.
pub async fn serve_tls(listener: TcpListener, ctx: Arc<Context>, tls: Arc<Tls>) {
    let handler_ctx = ctx.clone();
    accept_loop(
        listener,
        "mqtts",
        ctx.shutdown.clone(),
        ctx.tasks.clone(),
        ctx.connections.clone(),
        move |stream, peer, slot, over_limit| {
            let ctx = handler_ctx.clone();
            let tls = tls.clone();
            async move {
                let Some((stream, identity)) = tls.accept(stream, peer, "mqtts").await else {
                    return;
                };
                let (rd, wr) = split(stream, identity);
                connection::serve(rd, wr, peer, ctx, slot, over_limit).await;
            }
        },
    )
    .await;
}

/// Accepts MQTT over WebSocket on `listener` until shutdown: `ws`, or `wss`
/// when `tls` is given. The upgrade must ask for `mqtt.ws_path` and is
/// bounded by `mqtt.connect_timeout`.
pub async fn serve_ws(listener: TcpListener, ctx: Arc<Context>, tls: Option<Arc<Tls>>) {
    let protocol = if tls.is_some() { "wss" } else { "ws" };
    let handler_ctx = ctx.clone();
    accept_loop(
        listener,
        protocol,
        ctx.shutdown.clone(),
        ctx.tasks.clone(),
        ctx.connections.clone(),
        move |stream, peer, slot, over_limit| {
            let ctx = handler_ctx.clone();
            let tls = tls.clone();
            async move {
                let cfg = &ctx.config;
                // One message may carry a whole packet and then some.
                let max_message = cfg.max_packet_size.as_usize().saturating_add(64 * 1024);
                let (path, timeout) = (cfg.ws_path.as_str(), cfg.connect_timeout);
                match tls {
                    Some(tls) => {
                        let Some((stream, identity)) = tls.accept(stream, peer, protocol).await
                        else {
                            return;
                        };
                        let upgrade =
                            websocket::accept(stream, peer, protocol, path, max_message, timeout);
                        let Some(ws) = upgrade.await else { return };
                        let (rd, wr) = split(ws, identity);
                        connection::serve(rd, wr, peer, ctx.clone(), slot, over_limit).await;
                    }
                    None => {
                        let _ = stream.set_nodelay(true);
                        let upgrade =
                            websocket::accept(stream, peer, protocol, path, max_message, timeout);
                        let Some(ws) = upgrade.await else { return };
                        let (rd, wr) = split(ws, None);
                        connection::serve(rd, wr, peer, ctx.clone(), slot, over_limit).await;
                    }
                }
            }
        },
    )
    .await;
}
