//! The web console: a few static files compiled into the binary and served at `/console/`.
//!
//! Why so little server: the page is one more client of the public API 3.0. It signs its own
//! requests in the browser (TC3-HMAC-SHA256 through WebCrypto) with the SecretId and SecretKey
//! the user typed, which stay in the page's memory (the tab's sessionStorage at most): no
//! session, cookie or key ever reaches crsd, and the page sees exactly what the account's keys
//! see through the API. Charts come from Cloud Monitor's GetMonitorData (`tc3::handlers`).
//!
//! The files live in `crates/api/console/` (uPlot, MIT, vendored under `vendor/`). Every
//! answer carries a Content-Security-Policy that allows scripts, styles and requests from this
//! origin only (no inline script or style, no frames), so a name an instance was given cannot
//! become code in the page.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

/// What the console's pages may load and do.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; connect-src 'self'; img-src 'self'; form-action 'none'; \
    frame-ancestors 'none'; base-uri 'none'";

/// One embedded file.
struct Asset {
    /// The path under `/console/`.
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// Every file the console serves; `""` is the page itself.
const ASSETS: &[Asset] = &[
    Asset {
        path: "",
        content_type: "text/html; charset=utf-8",
        body: include_bytes!("../console/index.html"),
    },
    Asset {
        path: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/app.js"),
    },
    Asset {
        path: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/app.css"),
    },
    Asset {
        path: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../console/favicon.svg"),
    },
    Asset {
        path: "vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../console/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../console/vendor/uPlot.min.css"),
    },
    Asset {
        path: "vendor/LICENSE.uPlot",
        content_type: "text/plain; charset=utf-8",
        body: include_bytes!("../console/vendor/LICENSE.uPlot"),
    },
];

/// The console's routes: `/console` (redirected), `/console/` and its files.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/console/", get(|| async { serve("") }))
        .route(
            "/console/{*path}",
            get(|axum::extract::Path(path): axum::extract::Path<String>| async move {
                serve(&path)
            }),
        )
}

/// The file at `path` under `/console/`, with the headers every console answer carries.
fn serve(path: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.path == path) else {
        return with_policy((StatusCode::NOT_FOUND, "not found\n").into_response());
    };
    let mut response = asset.body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    with_policy(response)
}

fn with_policy(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    // A new crsd may serve new files: the browser asks again (and gets them whole; they are
    // small).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_type_and_the_page_loads_only_embedded_files() {
        let page = std::str::from_utf8(ASSETS[0].body).unwrap();
        for asset in ASSETS {
            assert!(!asset.body.is_empty(), "{}", asset.path);
            if [".js", ".css", ".svg"]
                .iter()
                .any(|x| asset.path.ends_with(x))
            {
                assert!(page.contains(asset.path), "the page loads {}", asset.path);
            }
        }
        // No inline script or style: the policy would refuse them.
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(!page.contains("<style"));
        let unknown = serve("../Cargo.toml");
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        let js = serve("app.js");
        assert_eq!(
            js.headers()[header::CONTENT_TYPE],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            js.headers()[header::CONTENT_SECURITY_POLICY],
            CONTENT_SECURITY_POLICY
        );
    }
}
