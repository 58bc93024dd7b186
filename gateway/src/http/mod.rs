//! The HTTP listener: health endpoints now; the SQS/SNS APIs, the admin API
//! and metrics are mounted here as they land.
//!
//! `/healthz` answers 200 while the process runs; `/readyz` answers 200 once
//! the gateway has finished starting (listeners bound, state recovered).

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::core::Core;

/// Serves HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(listener: TcpListener, core: Arc<Core>, shutdown: CancellationToken) {
    let app = router(core);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "http listener failed");
    }
}

fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(core)
}
