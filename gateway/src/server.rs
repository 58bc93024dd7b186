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
use crate::transport::tls::Tls;

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
    /// A configured certificate, key or client CA is unusable.
    #[error(transparent)]
    Tls(#[from] crate::transport::tls::TlsError),
    /// The definitions file is unreadable, invalid or contradicts what
    /// exists (the message names the file and the entry).
    #[error("{0}")]
    Definitions(String),
    /// A bridge cannot be set up (an unreadable certificate, say); the
    /// message names the bridge.
    #[error("{0}")]
    Bridge(String),
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
    tls: Option<Arc<Tls>>,
    bridges: crate::bridge::Bridges,
}

impl Gateway {
    /// Binds every configured listener and starts serving.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        // Certificates are read before anything listens: a bad file refuses
        // to start, naming its key.
        let tls = Tls::load(&config.tls)?;

        // Bind everything before serving anything, so a bad address fails fast
        // with nothing half-started.
        let mqtt = bind("mqtt.listen", config.mqtt_listen()).await?;
        let amqp = bind("amqp.listen", config.amqp_listen()).await?;
        let http = bind("http.listen", config.http_listen()).await?;
        let mut secure = Vec::new();
        for (key, protocol, addr) in config.tls_listeners() {
            if let Some(listener) = bind(key, Some(addr)).await? {
                secure.push((key, protocol, listener));
            }
        }
        let wants = |name: &str| secure.iter().any(|(_, p, _)| p.starts_with(name));

        let storage = &config.storage.path;
        std::fs::create_dir_all(storage).map_err(|source| StartError::Storage {
            path: storage.display().to_string(),
            source,
        })?;
        let core = recover(&config, http.as_ref()).await?;
        if let Some(tls) = &tls {
            tls.count_refusals_in(core.metrics.clone());
        }
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut listeners = Vec::new();

        // A protocol's plain, TLS and WebSocket listeners share one context,
        // so its connection limit counts them all.
        let mqtt_ctx = (mqtt.is_some() || wants("mqtt") || wants("ws")).then(|| {
            crate::mqtt::Context::new(
                core.clone(),
                config.mqtt.clone(),
                shutdown.clone(),
                tasks.clone(),
            )
        });
        let amqp_ctx = (amqp.is_some() || wants("amqp")).then(|| {
            crate::amqp::Context::new(
                core.clone(),
                config.amqp.clone(),
                shutdown.clone(),
                tasks.clone(),
            )
        });
        // The SQS/SNS services run even with the HTTP listener off: they
        // bring back stored topics and subscriptions, and definitions apply
        // through them before any client can connect.
        let api = crate::http::Api::new(core.clone(), &config, shutdown.clone());
        api.ensure_rule_targets(&config.rules);
        if let Some(path) = &config.definitions.file {
            let host = match config.http_listen() {
                Some(a) => format!("localhost:{}", a.port()),
                None => "localhost".to_owned(),
            };
            crate::definitions::apply_file(&api, path, &host)
                .await
                .map_err(StartError::Definitions)?;
        }
        // After recovery (an outbox keeps its messages across restarts),
        // before stored queues nobody claimed are dropped, and before anything
        // is served, so a bridge that cannot be set up refuses the start.
        let bridges = crate::bridge::start(
            &core,
            &config.bridges,
            crate::core::flow_control(&config.mqtt),
            &shutdown,
            &tasks,
        )
        .map_err(StartError::Bridge)?;
        if let (Some(listener), Some(ctx)) = (mqtt, &mqtt_ctx) {
            let addr = local_addr("mqtt.listen", &listener)?;
            listeners.push(("mqtt", addr));
            tasks.spawn(crate::mqtt::serve(listener, ctx.clone()));
        }
        if let (Some(listener), Some(ctx)) = (amqp, &amqp_ctx) {
            let addr = local_addr("amqp.listen", &listener)?;
            listeners.push(("amqp", addr));
            tasks.spawn(crate::amqp::serve(listener, ctx.clone()));
        }
        if let Some(listener) = http {
            let addr = local_addr("http.listen", &listener)?;
            listeners.push(("http", addr));
            tasks.spawn(crate::http::serve(listener, api.clone(), shutdown.clone()));
        }
        for (key, protocol, listener) in secure {
            let addr = local_addr(key, &listener)?;
            listeners.push((protocol, addr));
            match (protocol, &tls, &mqtt_ctx, &amqp_ctx) {
                ("mqtts", Some(tls), Some(ctx), _) => {
                    tasks.spawn(crate::mqtt::serve_tls(listener, ctx.clone(), tls.clone()));
                }
                ("ws", _, Some(ctx), _) => {
                    tasks.spawn(crate::mqtt::serve_ws(listener, ctx.clone(), None));
                }
                ("wss", Some(tls), Some(ctx), _) => {
                    let tls = Some(tls.clone());
                    tasks.spawn(crate::mqtt::serve_ws(listener, ctx.clone(), tls));
                }
                ("amqps", Some(tls), _, Some(ctx)) => {
                    tasks.spawn(crate::amqp::serve_tls(listener, ctx.clone(), tls.clone()));
                }
                ("https", Some(tls), _, _) => {
                    let https = tls
                        .https_listener(listener, shutdown.clone())
                        .map_err(|source| StartError::Bind { key, addr, source })?;
                    tasks.spawn(crate::http::serve(https, api.clone(), shutdown.clone()));
                }
                _ => unreachable!("{protocol} listener without its context"),
            }
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
            tls,
            bridges,
        })
    }

    /// Re-reads the TLS certificate, key and client CA (on SIGHUP): new
    /// handshakes use them, established connections stay up. A reload that
    /// fails keeps the current certificates and logs why.
    pub fn reload_tls(&self) {
        let Some(tls) = &self.tls else {
            tracing::info!("tls reload requested, but no certificate is configured");
            return;
        };
        match tls.reload() {
            Ok(()) => tracing::info!("tls certificates reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "tls reload failed; keeping the current certificates")
            }
        }
    }

    /// The address each listener is bound to, by protocol name.
    pub fn local_addr(&self, protocol: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(p, _)| *p == protocol)
            .map(|(_, a)| *a)
    }

    /// The configured bridges and their state.
    pub fn bridges(&self) -> &crate::bridge::Bridges {
        &self.bridges
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
