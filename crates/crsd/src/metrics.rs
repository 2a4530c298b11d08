//! The metrics listener: `GET /metrics`, crsd's own metrics in Prometheus text format (see the
//! service's `metrics`), and `GET /sd/nodes`, the nodes for Prometheus' HTTP service
//! discovery (scraped through the redis exporter, see the service's `node_metrics`), on a
//! socket of its own.
//!
//! Why its own: the API faces tenants, the metrics are the operator's (every account's
//! instances counted together, no authentication), so they are bound apart, to loopback or a
//! management network (`[metrics] listen`). A scrape is answered from counters in memory and
//! two small queries; nothing here needs the API listener's connection limits.

use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crsd_service::Service;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Binds `addr` (port 0: any free one), before anything else starts: an address in use
/// stops crsd at once.
pub fn bind(addr: SocketAddr) -> Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("binding the metrics listener {addr}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serves on `listener` until `shutdown` turns true.
pub fn spawn(
    listener: std::net::TcpListener,
    svc: Arc<Service>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/sd/nodes", get(sd_nodes))
        .with_state(svc);
    let task = tokio::spawn(async move {
        let stopped = async move {
            while !*shutdown.borrow() {
                if shutdown.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    Ok(task)
}

/// Prometheus' HTTP service discovery: every running node, scraped through the exporter.
async fn sd_nodes(State(svc): State<Arc<Service>>) -> axum::response::Response {
    match svc.node_discovery().await {
        Ok(groups) => axum::Json(groups).into_response(),
        Err(e) => {
            tracing::error!(error = ?e, "cannot list the nodes for discovery");
            (
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "cannot list the nodes",
            )
                .into_response()
        }
    }
}

async fn metrics(State(svc): State<Arc<Service>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crsd_service::metrics::CONTENT_TYPE)],
        svc.render_metrics().await,
    )
}
