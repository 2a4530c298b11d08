//! crsd-api: the HTTP face of crsd.
//!
//! One server core, many dialects: this crate owns the axum router, the health endpoint, the
//! guards every dialect shares (replay window, per-account rate limits) and the signing
//! primitives; each dialect module turns a request into one service call and renders the result
//! or the error in its own shape and codes. Handlers never touch the store or the engine.

pub mod guard;
pub mod params;
pub mod sign_v2;
pub mod v2;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use crsd_service::Service;
use std::sync::Arc;

/// What the HTTP layer needs besides the service.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Host names clients may have signed with besides the Host header they sent
    /// (e.g. `redis.api.qcloud.com` for clients that reach crsd through DNS or a proxy).
    pub public_hosts: Vec<String>,
    /// Requests whose Timestamp is further than this from crsd's clock are refused (seconds).
    pub replay_window_secs: i64,
    /// Per account and action: sustained requests per second, and the burst allowed.
    pub rate_per_second: f64,
    pub rate_burst: f64,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            public_hosts: vec!["redis.api.qcloud.com".into()],
            replay_window_secs: 300,
            rate_per_second: 100.0,
            rate_burst: 200.0,
        }
    }
}

pub struct AppState {
    pub svc: Arc<Service>,
    pub cfg: ApiConfig,
    pub replay: guard::ReplayGuard,
    pub limiter: guard::RateLimiter,
}

pub type SharedState = Arc<AppState>;

pub fn router(svc: Arc<Service>, cfg: ApiConfig) -> Router {
    let state = Arc::new(AppState {
        replay: guard::ReplayGuard::new(cfg.replay_window_secs),
        limiter: guard::RateLimiter::new(cfg.rate_per_second, cfg.rate_burst),
        svc,
        cfg,
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v2/index.php", get(v2::handle).post(v2::handle))
        .with_state(state)
}

async fn healthz(State(_state): State<SharedState>) -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}
