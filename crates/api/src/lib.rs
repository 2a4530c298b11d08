//! crsd-api: the HTTP face of crsd.
//!
//! One server core, many dialects: this crate owns the axum router, the health endpoint, the
//! guards every dialect shares (replay window, per-account rate limits), the signing
//! primitives and the one request pipeline (`pipeline`) every dialect runs; each dialect module
//! supplies its parser, signer, typed actions and handlers (one service call each) and renders
//! the result or the error in its own shape and codes. Handlers never touch the store or the engine.
//! The web console (`console`) is static files: the page is a client of API 3.0 like any other.

pub mod co;
pub mod console;
pub mod download;
pub mod gate;
pub mod guard;
pub mod limits;
mod metrics;
pub mod params;
mod pipeline;
pub mod replay_journal;
pub mod sign_co;
pub mod sign_tc3;
pub mod sign_v2;
pub mod tc3;
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
    /// Where the replay guard keeps what was used (nonces, TC3 signatures) so that a restart
    /// does not forget it; `None` keeps it in memory only.
    pub replay_dir: Option<std::path::PathBuf>,
    /// What a request may send before and while its body is read (see `gate`).
    pub limits: gate::Limits,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            public_hosts: vec!["redis.api.qcloud.com".into()],
            replay_window_secs: 300,
            rate_per_second: 100.0,
            rate_burst: 200.0,
            replay_dir: None,
            limits: gate::Limits::default(),
        }
    }
}

pub struct AppState {
    pub svc: Arc<Service>,
    pub cfg: ApiConfig,
    pub downloads: Downloads,
    pub replay: guard::ReplayGuard,
    pub limiter: guard::RateLimiter,
    pub gate: gate::Gate,
}

pub type SharedState = Arc<AppState>;

/// Backup download URLs: who signs them and the two public base URLs they start with
/// (`data.intranet` and `data.extranet` of GetBackupDownloadUrl).
pub struct Downloads {
    pub signer: download::DownloadSigner,
    pub intranet_base: String,
    pub extranet_base: String,
}

impl Downloads {
    /// The signed (extranet, intranet) links to a backup's file, valid from `now`.
    pub fn urls(&self, backup_id: &str, now: chrono::DateTime<chrono::Utc>) -> (String, String) {
        (
            self.signer.url(&self.extranet_base, backup_id, now),
            self.signer.url(&self.intranet_base, backup_id, now),
        )
    }
}

/// The router; fails only when the replay journal cannot be opened.
pub fn router(svc: Arc<Service>, cfg: ApiConfig, downloads: Downloads) -> std::io::Result<Router> {
    let replay = match &cfg.replay_dir {
        Some(dir) => {
            guard::ReplayGuard::with_journal(cfg.replay_window_secs, dir, svc.now().timestamp())?
        }
        None => guard::ReplayGuard::new(cfg.replay_window_secs),
    };
    let state = Arc::new(AppState {
        replay,
        limiter: guard::RateLimiter::new(cfg.rate_per_second, cfg.rate_burst),
        gate: gate::Gate::new(cfg.limits.clone()),
        svc,
        cfg,
        downloads,
    });
    // The gate reads and bounds bodies; the handlers' extractors then see a whole body of at
    // most `max_body_bytes`.
    let body_limit = usize::try_from(state.cfg.limits.max_body_bytes).unwrap_or(usize::MAX);
    Ok(Router::new()
        .route("/healthz", get(healthz))
        .route("/v2/index.php", dialect::<v2::V2>())
        .route("/", dialect::<tc3::Tc3>())
        .route("/redis", dialect::<co::Co>())
        .route("/redis/", dialect::<co::Co>())
        .route(
            "/download/{file}",
            get(download_backup).head(download_backup),
        )
        .merge(console::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::check,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        // Outermost: the time of a request includes the gate's reading of its body.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::record,
        ))
        .with_state(state))
}

/// A dialect's path: GET and POST, through the one request pipeline.
fn dialect<D: pipeline::Dialect>() -> axum::routing::MethodRouter<SharedState> {
    get(pipeline::handle::<D>).post(pipeline::handle::<D>)
}

/// `GET /download/<backupId>.rdb?<token>`: 403 unless the token is this backup's, unaltered
/// and unexpired; 404 once the backup is gone; else the file, streamed (Range supported).
async fn download_backup(
    State(state): State<SharedState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let Some(backup_id) = file.strip_suffix(".rdb") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = req.uri().query().unwrap_or_default().to_string();
    if state
        .downloads
        .signer
        .verify(backup_id, &token, state.svc.now())
        .is_err()
    {
        return (StatusCode::FORBIDDEN, "invalid or expired download link\n").into_response();
    }
    match state.svc.backup_file(backup_id).await {
        Ok(Some(found)) => download::serve_file(&found.path, &file, req).await,
        Ok(None) => (StatusCode::NOT_FOUND, "no such backup\n").into_response(),
        Err(e) => {
            tracing::error!(error = ?e, backup = backup_id, "download lookup failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The host a client signed with: the Host header exactly as received (tccli sends
/// `http://127.0.0.1:PORT`), else the request URI's authority.
pub(crate) fn request_host(headers: &axum::http::HeaderMap, uri: &axum::http::Uri) -> String {
    headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| uri.authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

async fn healthz(State(_state): State<SharedState>) -> (StatusCode, &'static str) {
    (StatusCode::OK, "ok\n")
}
