//! Download URLs and the file response: the signer's round trip and every way a token can be
//! wrong (all without sleeping: `now` is passed in), then `serve_file` behind a real axum
//! server on 127.0.0.1:0, fetched with a real HTTP client.

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Duration as ChronoDuration, TimeZone, Utc};
use crsd_api::download::{self, backup_id_from_file_name, Denied, DownloadSigner};
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const TTL: Duration = Duration::from_secs(12 * 3600);

fn signer() -> DownloadSigner {
    DownloadSigner::new(*b"0123456789abcdef0123456789abcdef", TTL)
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

/// The token of a URL the signer made (everything after '?').
fn token_of(url: &str) -> &str {
    url.split_once('?').expect("a query").1
}

#[test]
fn url_shape_and_round_trip() {
    let s = signer();
    let url = s.url("http://10.0.0.5:9750/", "b-1a2b", t0());
    let (path, token) = url.split_once('?').unwrap();
    assert_eq!(path, "http://10.0.0.5:9750/download/b-1a2b.rdb");
    assert_eq!(token.len(), 54, "40 bytes, base64url without padding");
    assert!(token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(s.url("http://10.0.0.5:9750", "b-1a2b", t0()), url);
    assert_eq!(s.verify("b-1a2b", token, t0()), Ok(()));
    let last_second = t0() + ChronoDuration::hours(12) - ChronoDuration::seconds(1);
    assert_eq!(s.verify("b-1a2b", token, last_second), Ok(()));
    // Clock skew backwards does not invalidate a link.
    assert_eq!(
        s.verify("b-1a2b", token, t0() - ChronoDuration::hours(1)),
        Ok(())
    );
    // Another moment gives another token, both valid.
    let later = s.url("http://h", "b-1a2b", t0() + ChronoDuration::seconds(1));
    assert_ne!(token_of(&later), token);
    assert_eq!(s.verify("b-1a2b", token_of(&later), t0()), Ok(()));
    // The file name of the path gives the id back.
    assert_eq!(backup_id_from_file_name("b-1a2b.rdb"), Some("b-1a2b"));
}

#[test]
fn the_ttl_is_configurable() {
    let s = DownloadSigner::new([9; 32], Duration::from_secs(60));
    let url = s.url("http://h", "b", t0());
    let token = token_of(&url);
    assert_eq!(
        s.verify("b", token, t0() + ChronoDuration::seconds(59)),
        Ok(())
    );
    assert_eq!(
        s.verify("b", token, t0() + ChronoDuration::seconds(60)),
        Err(Denied::Expired)
    );
}

#[test]
fn expired_tokens_are_denied() {
    let s = signer();
    let url = s.url("http://h", "b-1", t0());
    let token = token_of(&url);
    for after in [
        ChronoDuration::hours(12),
        ChronoDuration::hours(12) + ChronoDuration::seconds(1),
        ChronoDuration::days(400),
    ] {
        assert_eq!(s.verify("b-1", token, t0() + after), Err(Denied::Expired));
    }
}

#[test]
fn every_altered_character_is_denied() {
    let s = signer();
    let url = s.url("http://h", "b-1", t0());
    let token = token_of(&url);
    for i in 0..token.len() {
        let mut bytes = token.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(bytes).unwrap();
        let got = s.verify("b-1", &altered, t0());
        assert!(
            matches!(got, Err(Denied::BadSignature | Denied::Malformed)),
            "position {i}: {got:?}"
        );
    }
}

#[test]
fn a_token_is_bound_to_its_backup_and_key() {
    let s = signer();
    let url = s.url("http://h", "b-1", t0());
    let token = token_of(&url);
    for other in ["b-2", "b-10", "B-1", "b-1 ", ""] {
        assert_eq!(
            s.verify(other, token, t0()),
            Err(Denied::BadSignature),
            "{other:?}"
        );
    }
    let other_key = DownloadSigner::new([0; 32], TTL);
    assert_eq!(
        other_key.verify("b-1", token, t0()),
        Err(Denied::BadSignature)
    );
}

#[test]
fn a_forged_later_expiry_is_denied() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let s = signer();
    let url = s.url("http://h", "b-1", t0());
    let mut raw = URL_SAFE_NO_PAD.decode(token_of(&url)).unwrap();
    let expiry = u64::from_be_bytes(raw[..8].try_into().unwrap());
    assert_eq!(expiry, (t0().timestamp() + 12 * 3600) as u64);
    raw[..8].copy_from_slice(&(expiry + 86_400).to_be_bytes());
    let forged = URL_SAFE_NO_PAD.encode(&raw);
    assert_eq!(
        s.verify("b-1", &forged, t0() + ChronoDuration::hours(13)),
        Err(Denied::BadSignature)
    );
}

#[test]
fn truncated_and_malformed_tokens_are_denied() {
    let s = signer();
    let url = s.url("http://h", "b-1", t0());
    let token = token_of(&url);
    let padded = format!("{token}==");
    let longer = format!("{token}A");
    let std_alphabet = token.replace(['-', '_'], "+");
    for bad in [
        &token[..53],
        &token[..52],
        &token[..11],
        "",
        &longer,
        &padded,
        &std_alphabet,
        "not a token at all!",
        "中文",
    ] {
        if bad == token {
            continue;
        }
        let got = s.verify("b-1", bad, t0());
        assert!(
            matches!(got, Err(Denied::Malformed | Denied::BadSignature)),
            "{bad:?}: {got:?}"
        );
    }
    assert_eq!(s.verify("b-1", &token[..53], t0()), Err(Denied::Malformed));
}

#[test]
fn odd_ids_are_escaped_in_the_path() {
    let url = signer().url("http://h", "a/../b c", t0());
    assert!(
        url.starts_with("http://h/download/a%2F..%2Fb%20c.rdb?"),
        "{url}"
    );
}

// --- serve_file over HTTP --------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64).
fn bytes(len: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

struct Fixture {
    signer: DownloadSigner,
    dir: PathBuf,
}

/// The route as crsd wires it: verify the token, map the id to a file, stream it.
async fn download_route(
    State(fx): State<Arc<Fixture>>,
    UrlPath(file): UrlPath<String>,
    req: Request,
) -> Response {
    let Some(id) = backup_id_from_file_name(&file) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let token = req.uri().query().unwrap_or_default().to_string();
    if let Err(denied) = fx.signer.verify(id, &token, Utc::now()) {
        return denied.into_response();
    }
    download::serve_file(&fx.dir.join(&file), &file, req).await
}

/// Serves `dir` on 127.0.0.1:0; returns the base URL.
async fn start(dir: PathBuf) -> String {
    let fx = Arc::new(Fixture {
        signer: signer(),
        dir,
    });
    let app = Router::new()
        .route(download::ROUTE, get(download_route).head(download_route))
        .route(
            "/raw/{file}",
            get(raw_route).head(raw_route).post(raw_route),
        )
        .with_state(fx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// serve_file without the token check, for the HTTP-level cases.
async fn raw_route(
    State(fx): State<Arc<Fixture>>,
    UrlPath(file): UrlPath<String>,
    req: Request,
) -> Response {
    download::serve_file(&fx.dir.join(&file), &file, req).await
}

const SIZE: usize = 3 * 1024 * 1024 + 123;

async fn setup() -> (tempfile::TempDir, Vec<u8>, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = bytes(SIZE);
    std::fs::write(dir.path().join("b-1.rdb"), &data).unwrap();
    let base = start(dir.path().to_path_buf()).await;
    (dir, data, base)
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn full_get_and_head() {
    let (_dir, data, base) = setup().await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("{base}/raw/b-1.rdb"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-length"), SIZE.to_string());
    assert_eq!(header(&res, "content-type"), "application/octet-stream");
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"b-1.rdb\""
    );
    assert_eq!(header(&res, "accept-ranges"), "bytes");
    let body = res.bytes().await.unwrap();
    assert_eq!(body.len(), SIZE);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        hex::encode(Sha256::digest(&data))
    );
    assert!(body[..] == data[..]);

    let res = client
        .head(format!("{base}/raw/b-1.rdb"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-length"), SIZE.to_string());
    assert_eq!(header(&res, "accept-ranges"), "bytes");
    assert_eq!(
        header(&res, "content-disposition"),
        "attachment; filename=\"b-1.rdb\""
    );
    assert!(res.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn single_ranges() {
    let (_dir, data, base) = setup().await;
    let client = reqwest::Client::new();
    let n = SIZE;
    for (range, from, to) in [
        ("bytes=10-19", 10, 19),
        ("bytes=-5", n - 5, n - 1),
        ("bytes=100-", 100, n - 1),
        ("bytes=0-0", 0, 0),
        ("bytes=1048570-1048590", 1_048_570, 1_048_590),
        ("bytes=10-99999999", 10, n - 1),
    ] {
        let res = client
            .get(format!("{base}/raw/b-1.rdb"))
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 206, "{range}");
        assert_eq!(
            header(&res, "content-range"),
            format!("bytes {from}-{to}/{n}"),
            "{range}"
        );
        assert_eq!(
            header(&res, "content-length"),
            (to - from + 1).to_string(),
            "{range}"
        );
        let body = res.bytes().await.unwrap();
        assert!(body[..] == data[from..=to], "{range}");
    }
}

#[tokio::test]
async fn unsatisfiable_ranges_missing_files_and_other_methods() {
    let (_dir, _data, base) = setup().await;
    let client = reqwest::Client::new();
    for range in [
        format!("bytes={SIZE}-"),
        format!("bytes={}-{}", SIZE + 10, SIZE + 20),
        "bytes=20-10".to_string(),
        "bytes=0-1,5-6".to_string(),
    ] {
        let res = client
            .get(format!("{base}/raw/b-1.rdb"))
            .header("range", &range)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 416, "{range}");
        assert_eq!(
            header(&res, "content-range"),
            format!("bytes */{SIZE}"),
            "{range}"
        );
    }
    let res = client
        .get(format!("{base}/raw/gone.rdb"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    assert!(res.headers().get("content-disposition").is_none());
    let res = client
        .post(format!("{base}/raw/b-1.rdb"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 405);
}

#[tokio::test]
async fn signed_urls_end_to_end() {
    let (_dir, data, base) = setup().await;
    let client = reqwest::Client::new();
    let url = signer().url(&base, "b-1", Utc::now());
    let res = client.get(&url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.bytes().await.unwrap()[..] == data[..]);

    let res = client
        .get(&url)
        .header("range", "bytes=-5")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 206);
    assert!(res.bytes().await.unwrap()[..] == data[SIZE - 5..]);

    // Expired an hour ago; another id's token; no token.
    let old = signer().url(&base, "b-1", Utc::now() - ChronoDuration::hours(13));
    let other = signer().url(&base, "b-2", Utc::now());
    for bad in [
        old,
        format!("{base}/download/b-1.rdb?{}", token_of(&other)),
        format!("{base}/download/b-1.rdb"),
    ] {
        let res = client.get(&bad).send().await.unwrap();
        assert_eq!(res.status(), 403, "{bad}");
    }
}
