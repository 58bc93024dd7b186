//! Starting and stopping the gateway: binds every configured listener, runs the
//! front ends on them, and shuts everything down in order.
//!
//! Shutdown is designed, not bolted on: one cancellation token reaches every
//! accept loop and connection; connections close their clients cleanly (MQTT 5
//! clients get DISCONNECT 0x8B); the task tracker lets us wait for all of them,
//! bounded by `limits.shutdown_timeout`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::core::Core;
use crate::core::session::Kick;

/// Why the gateway could not start; printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("{key}: cannot listen on {addr}: {source}")]
    Bind {
        /// The configuration key naming the listener.
        key: &'static str,
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The data directory is unusable.
    #[error("storage.path: cannot use {path}: {source}")]
    Storage {
        /// The directory.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store could not be opened or read back.
    #[error("storage ({path}): {source}")]
    Store {
        /// The directory.
        path: String,
        /// What went wrong.
        source: crate::store::StoreError,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    core: Arc<Core>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    listeners: Vec<(&'static str, SocketAddr)>,
    shutdown_timeout: Duration,
    _pager: crate::core::pager::Pager,
}

impl Gateway {
    /// Binds every configured listener and starts serving.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        // Bind everything before serving anything, so a bad address fails fast
        // with nothing half-started.
        let mqtt = bind("mqtt.listen", config.mqtt_listen()).await?;
        let amqp = bind("amqp.listen", config.amqp_listen()).await?;
        let http = bind("http.listen", config.http_listen()).await?;

        let storage = &config.storage.path;
        std::fs::create_dir_all(storage).map_err(|source| StartError::Storage {
            path: storage.display().to_string(),
            source,
        })?;
        let core = recover(&config, http.as_ref()).await?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut listeners = Vec::new();

        if let Some(listener) = mqtt {
            let addr = local_addr("mqtt.listen", &listener)?;
            listeners.push(("mqtt", addr));
            let ctx = crate::mqtt::Context::new(
                core.clone(),
                config.mqtt.clone(),
                shutdown.clone(),
                tasks.clone(),
            );
            tasks.spawn(crate::mqtt::serve(listener, ctx));
        }
        if let Some(listener) = amqp {
            let addr = local_addr("amqp.listen", &listener)?;
            listeners.push(("amqp", addr));
            let ctx = crate::amqp::Context::new(
                core.clone(),
                config.amqp.clone(),
                shutdown.clone(),
                tasks.clone(),
            );
            tasks.spawn(crate::amqp::serve(listener, ctx));
        }
        if let Some(listener) = http {
            let addr = local_addr("http.listen", &listener)?;
            listeners.push(("http", addr));
            let api = crate::http::Api::new(core.clone(), &config, shutdown.clone());
            api.ensure_rule_targets(&config.rules);
            tasks.spawn(crate::http::serve(listener, api, shutdown.clone()));
        }
        core.finish_recovery();
        let pager = crate::core::pager::Pager::start(
            core.vhost.env().clone(),
            config.limits.memory_high_watermark.as_usize(),
        );
        core.metrics.readiness.set_ready();
        for (protocol, address) in &listeners {
            tracing::info!(%protocol, %address, "listening");
        }
        let summary: Vec<String> = listeners.iter().map(|(p, a)| format!("{p}={a}")).collect();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            storage = %storage.display(),
            "tether started: {}",
            summary.join(" ")
        );
        Ok(Gateway {
            core,
            shutdown,
            tasks,
            listeners,
            shutdown_timeout: config.limits.shutdown_timeout,
            _pager: pager,
        })
    }

    /// The address each listener is bound to, by protocol name.
    pub fn local_addr(&self, protocol: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, a)| *a)
    }

    /// The core, for embedding and tests.
    pub fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Stops accepting, closes every client cleanly and waits (bounded) for all
    /// tasks to finish.
    pub async fn shutdown(self) {
        self.core.metrics.readiness.set_stopping();
        self.shutdown.cancel();
        self.core.sessions.kick_all(Kick::Shutdown);
        self.tasks.close();
        if tokio::time::timeout(self.shutdown_timeout, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.tasks.len(),
                "shutdown timeout reached with tasks still running; exiting anyway"
            );
        }
        if let Err(e) = self.core.store.flush() {
            tracing::error!(error = %e, "storage could not be flushed at shutdown");
        }
        let stats = self.core.store.stats();
        if stats.batches > 0 {
            tracing::info!(
                batches = stats.batches,
                ops = stats.ops,
                syncs = stats.syncs,
                "storage totals"
            );
        }
    }
}

/// Opens the store and rebuilds the core from what it kept, on a blocking
/// thread (a large store takes a while); meanwhile the HTTP listener, if
/// any, answers health probes: live, not ready.
async fn recover(config: &Config, http: Option<&TcpListener>) -> Result<Arc<Core>, StartError> {
    let path = config.storage.path.display().to_string();
    let cfg = config.clone();
    let work = tokio::task::spawn_blocking(move || {
        let store = crate::store::open(&cfg.storage)?;
        Core::new(&cfg, store)
    });
    let joined = match http {
        Some(listener) => tokio::select! {
            r = work => r,
            never = crate::metrics::answer_probes(listener) => match never {},
        },
        None => work.await,
    };
    match joined {
        Ok(result) => result.map_err(|source| StartError::Store { path, source }),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StartError::Store {
            path,
            source: crate::store::StoreError::Io(format!("recovery did not finish: {e}")),
        }),
    }
}

async fn bind(
    key: &'static str,
    addr: Option<SocketAddr>,
) -> Result<Option<TcpListener>, StartError> {
    let Some(addr) = addr else { return Ok(None) };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| StartError::Bind { key, addr, source })
}

fn local_addr(key: &'static str, listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        key,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })
}
