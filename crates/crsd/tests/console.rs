//! The web console's files over real HTTP from the in-process crsd: where they are, their
//! types and the headers that keep the page to its own files (the browser walk is
//! tests/console/run.sh).

mod common;

use common::TestCrsd;
use reqwest::redirect::Policy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_with_its_policy() {
    let crsd = TestCrsd::start().await;
    let url = crsd.client().url;
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();

    let r = http.get(format!("{url}/console")).send().await.unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "/console/");

    for (path, kind) in [
        ("/console/", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
        (
            "/console/vendor/uPlot.iife.min.js",
            "text/javascript; charset=utf-8",
        ),
    ] {
        let r = http.get(format!("{url}{path}")).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], kind, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert!(h.get("set-cookie").is_none());
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    let page = http
        .get(format!("{url}/console/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(r#"<script src="app.js" defer></script>"#));

    let head = http.head(format!("{url}/console/")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    for missing in [
        "/console/nothing.js",
        "/console/vendor/",
        "/console/%2e%2e/Cargo.toml",
    ] {
        let r = http.get(format!("{url}{missing}")).send().await.unwrap();
        assert_eq!(r.status(), 404, "{missing}");
    }
}
