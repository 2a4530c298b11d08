//! A minimal download server around [`crsd_api::download`], for trying the URLs with
//! `wget`/`curl -O` and for measuring `serve_file` against nginx:
//!
//! ```text
//! cargo run --release -p crsd-api --example serve_download -- DIR [PORT]
//! ```
//!
//! Serves every `<backupId>.rdb` in DIR at `/download/<backupId>.rdb?<token>` and prints a
//! signed URL (valid 12 hours) for each. The signing key is a fixed demo key: examples only.

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use crsd_api::download::{self, backup_id_from_file_name, DownloadSigner};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

struct Served {
    signer: DownloadSigner,
    dir: PathBuf,
}

async fn route(
    State(s): State<Arc<Served>>,
    UrlPath(file): UrlPath<String>,
    req: Request,
) -> Response {
    let Some(id) = backup_id_from_file_name(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = req.uri().query().unwrap_or_default().to_string();
    if let Err(denied) = s.signer.verify(id, &token, chrono::Utc::now()) {
        return denied.into_response();
    }
    download::serve_file(&s.dir.join(&file), &file, req).await
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: serve_download DIR [PORT]"));
    let port: u16 = args.next().map_or(9750, |p| p.parse().expect("a port"));
    let signer = DownloadSigner::new(
        *b"crsd-example-key-not-for-use!!!!",
        Duration::from_secs(12 * 3600),
    );
    let base = format!("http://127.0.0.1:{port}");
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name();
        if let Some(id) = name.to_str().and_then(backup_id_from_file_name) {
            println!("{}", signer.url(&base, id, chrono::Utc::now()));
        }
    }
    let app = Router::new()
        .route(download::ROUTE, get(route).head(route))
        .with_state(Arc::new(Served { signer, dir }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
