//! The AMQP 0-9-1 front end: RabbitMQ clients (pika, lapin, the Java and .NET
//! clients, amqplib, Celery/kombu) connect unchanged.
//!
//! * [`serve`]: the accept loop and connection limit; [`serve_tls`] the same
//!   over TLS (amqps), sharing the limit.
//! * `connection`: handshake, I/O loop, heartbeats, connection.blocked, close.
//! * `channel`: channel state and every class's methods as core operations.
//! * `deliver`: consumer deliveries within prefetch credit.
//! * `frame`: framing, method parsing (amq-protocol) and hot-path frame writers.
//! * `args`: `x-` declaration arguments to core queue options.
//!
//! Exchanges, queues and routing are the core's; MQTT topics reach AMQP
//! queues bound to `amq.topic` and back (see the README's topic mapping).

pub(crate) mod args;
mod channel;
mod connection;
mod deliver;
pub mod frame;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AmqpConfig;
use crate::core::Core;
use crate::listener::{Connections, accept_loop};
use crate::transport::split;
use crate::transport::tls::Tls;

/// What every AMQP connection task shares.
#[derive(Debug)]
pub struct Context {
    /// The core.
    pub core: Arc<Core>,
    /// `[amqp]` settings.
    pub config: AmqpConfig,
    /// Cancelled when the gateway stops.
    pub shutdown: CancellationToken,
    tasks: TaskTracker,
    connections: Arc<Connections>,
}

impl Context {
    /// Shared state for the AMQP listener.
    pub fn new(
        core: Arc<Core>,
        config: AmqpConfig,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Self> {
        let connections = Connections::new(config.max_connections);
        core.metrics
            .track_connections(crate::metrics::Protocol::Amqp, connections.clone());
        Arc::new(Context {
            core,
            config,
            shutdown,
            tasks,
            connections,
        })
    }

    /// Open AMQP connections.
    pub fn connection_count(&self) -> usize {
        self.connections.count()
    }
}

/// Accepts AMQP connections on `listener` until shutdown.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>) {
    let handler_ctx = ctx.clone();
    accept_loop(
        listener,
        "amqp",
        ctx.shutdown.clone(),
        ctx.tasks.clone(),
        ctx.connections.clone(),
        move |stream, peer, slot, over_limit| {
            connection::run(stream, peer, handler_ctx.clone(), slot, over_limit)
        },
    )
    .await;
}

/// Accepts AMQP over TLS (amqps) on `listener` until shutdown. The handshake
/// runs in each connection's task, bounded by `tls.handshake_timeout`.
pub async fn serve_tls(listener: TcpListener, ctx: Arc<Context>, tls: Arc<Tls>) {
    let handler_ctx = ctx.clone();
    accept_loop(
        listener,
        "amqps",
        ctx.shutdown.clone(),
        ctx.tasks.clone(),
        ctx.connections.clone(),
        move |stream, peer, slot, over_limit| {
            let ctx = handler_ctx.clone();
            let tls = tls.clone();
            async move {
                let Some((stream, identity)) = tls.accept(stream, peer, "amqps").await else {
                    return;
                };
                let (rd, wr) = split(stream, identity);
                connection::serve(rd, wr, peer, ctx, slot, over_limit).await;
            }
        },
    )
    .await;
}
