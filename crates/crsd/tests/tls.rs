//! TLS as an operator sets it up: `crsd tls init` (the real binary) makes a private CA and a
//! certificate; crsd serves HTTP and HTTPS side by side; a client that trusts only that CA
//! gets signed answers over HTTPS (by IP address and by name), and the HTTP listener answers
//! at the same time. The compat run does the same with tccli and the Python SDKs.

mod common;

use common::TestCrsd;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_init_then_http_and_https_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let out = Command::new(env!("CARGO_BIN_EXE_crsd"))
        .args(["tls", "init", "--dir"])
        .arg(&certs)
        .args(["--name", "crsd.test", "--days", "30"])
        .env_remove("CRSD_DATA_DIR")
        .output()
        .expect("crsd tls init runs");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{printed}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        printed.contains("certifi.where()"),
        "tccli's way: {printed}"
    );
    assert!(
        printed.contains("certification="),
        "the SDK's way: {printed}"
    );
    // A second run keeps what the first made.
    let again = Command::new(env!("CARGO_BIN_EXE_crsd"))
        .args(["tls", "init", "--dir"])
        .arg(&certs)
        .output()
        .unwrap();
    assert!(!again.status.success(), "existing files are not replaced");

    let mut cfg = common::test_config(dir.path());
    cfg.tls.cert = Some(certs.join("cert.pem"));
    cfg.tls.key = Some(certs.join("key.pem"));
    let https_port = common::free_port();
    cfg.tls.listen = format!("127.0.0.1:{https_port}");
    let crsd = TestCrsd::start_with(dir, cfg).await;
    assert!(
        crsd.url.starts_with("http://"),
        "`listen` stays HTTP: {}",
        crsd.url
    );
    let running = crsd.running.as_ref().unwrap();
    assert_eq!(running.https_addr.map(|a| a.port()), Some(https_port));

    // Plain HTTP on `listen`.
    let http = crsd.client();
    http.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;

    // HTTPS, trusting the private CA alone (no system roots), by IP and by name.
    let ca = reqwest::Certificate::from_pem(&std::fs::read(certs.join("ca.pem")).unwrap()).unwrap();
    for host in ["127.0.0.1", "crsd.test"] {
        let mut https = crsd.client();
        https.http = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .resolve(
                "crsd.test",
                format!("127.0.0.1:{https_port}").parse().unwrap(),
            )
            .build()
            .unwrap();
        https.url = format!("https://{host}:{https_port}");
        https.host = format!("{host}:{https_port}");
        https
            .ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
            .await;
    }

    // A client that does not trust the CA is refused the handshake.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(format!("https://127.0.0.1:{https_port}/healthz"))
        .send()
        .await
        .is_err());
}
