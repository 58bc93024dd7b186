//! The AMQP 0-9-1 front end: RabbitMQ clients (pika, lapin, the Java and .NET
//! clients, amqplib, Celery/kombu) connect unchanged.
//!
//! * [`serve`]: the accept loop and connection limit.
//! * `connection`: handshake, I/O loop, heartbeats, connection.blocked, close.
//! * `channel`: channel state and every class's methods as core operations.
//! * `deliver`: consumer deliveries within prefetch credit.
//! * `frame`: framing, method parsing (amq-protocol) and hot-path frame writers.
//! * `args`: `x-` declaration arguments to core queue options.
//!
//! Exchanges, queues and routing are the core's; MQTT topics reach AMQP
//! queues bound to `amq.topic` and back (see the README's topic mapping).

mod args;
mod channel;
mod connection;
mod deliver;
pub mod frame;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::AmqpConfig;
use crate::core::Core;

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
    connections: AtomicUsize,
}

impl Context {
    /// Shared state for the AMQP listener.
    pub fn new(
        core: Arc<Core>,
        config: AmqpConfig,
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

    /// Open AMQP connections.
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

/// Accepts AMQP connections on `listener` until shutdown.
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
                tracing::warn!(error = %e, "amqp accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
