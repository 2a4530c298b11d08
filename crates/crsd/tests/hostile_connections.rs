//! What a stranger can do with connections alone, before any signature is checked: stall
//! request bodies, hold idle connections and half-sent heads past the open-file limit, send
//! over-long queries and bodies. crsd must stay answering with bounded memory, leave its
//! healthy redis-server processes alone, and refuse in each dialect's own error shape.

mod common;

use common::daemon::Daemon;
use common::{test_config, TestCrsd};
use serde_json::Value;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET_ID: &str = "AKIDhostileTestSecretId00000000001";
const SECRET_KEY: &str = "hostileTestSecretKey000000000001";
const PASSWORD: &str = "Hostile2024(ok";

/// Resident memory of a process, bytes.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn append_config(d: &Daemon, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&d.config)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn pid_of(d: &Daemon, id: &str, role: &str) -> u32 {
    let p = d.node_dir(id, role).join("redis.pid");
    std::fs::read_to_string(p).unwrap().trim().parse().unwrap()
}

/// Reads until the peer closes (EOF or reset) or `deadline`; what it said when it closed in
/// time, None when still open.
async fn closed_by(stream: &mut TcpStream, deadline: tokio::time::Instant) -> Option<String> {
    let mut buf = vec![0u8; 64 << 10];
    let mut said = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&said).into_owned()),
            Ok(Ok(n)) => said.extend_from_slice(&buf[..n]),
        }
    }
}

/// An answer read off a raw connection: status, headers (lower-cased text) and body.
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("a JSON body, got {}: {}", self.status, self.body))
    }

    fn content_type(&self) -> Option<&str> {
        self.head
            .lines()
            .find_map(|l| l.strip_prefix("content-type: "))
    }
}

/// Sends `bytes` (a head, maybe part of a body) and reads the answer, which must come within
/// `within` and close the connection.
async fn answer_to(addr: &str, bytes: &[u8], within: Duration) -> Raw {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("no answer within {within:?}"))
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    Raw {
        status,
        head: head.to_ascii_lowercase(),
        body: body.to_string(),
    }
}

// ------------------------------------------------------------------------------ the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_bodies_hold_bounded_memory_and_are_closed_after_the_body_timeout() {
    const STALLED: usize = 150;
    const SENT: usize = 768 << 10;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    append_config(
        &d,
        "[api]\nbody_timeout_secs = 3\nmax_body_bytes = 1048576\nbody_budget_bytes = 8388608\n",
    );
    d.start().await;
    let c = d.client();
    c.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    let pid = d.pid().unwrap();
    let before = rss_bytes(pid);

    // Strangers: a head announcing 1 MiB, three quarters of it, then nothing.
    let addr = format!("127.0.0.1:{}", d.port);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..STALLED {
        let addr = addr.clone();
        sends.spawn(async move {
            let mut s = TcpStream::connect(&addr).await.unwrap();
            let head = "POST /v2/index.php HTTP/1.1\r\nHost: 127.0.0.1\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1048576\r\n\r\n";
            let _ = s.write_all(head.as_bytes()).await;
            // crsd may refuse (budget spent) and close while this is still being written.
            let body = vec![b'a'; SENT];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&body)).await;
            s
        });
    }
    let mut stalled = Vec::new();
    while let Some(s) = sends.join_next().await {
        stalled.push(s.unwrap());
    }
    let sent_at = tokio::time::Instant::now();

    // A signed request is answered at once, and memory stayed bounded.
    let t = Instant::now();
    c.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "answered in {:?}",
        t.elapsed()
    );
    let grown = rss_bytes(pid).saturating_sub(before);
    eprintln!(
        "signed request answered in {:?} beside {STALLED} stalled bodies; RSS {} MiB -> +{} MiB",
        t.elapsed(),
        before >> 20,
        grown >> 20
    );
    assert!(
        grown < 48 << 20,
        "{STALLED} stalled bodies of {SENT} bytes grew crsd by {} MiB",
        grown >> 20
    );

    // Every stalled connection is closed once the body timeout (3 s) has passed.
    // Those whose body was being read are told so, in v2's shape; the others were refused as
    // busy when the shared budget ran out.
    let deadline = sent_at + Duration::from_secs(3 + 4);
    let mut timed_out = 0;
    for (i, s) in stalled.iter_mut().enumerate() {
        let said = closed_by(s, deadline)
            .await
            .unwrap_or_else(|| panic!("stalled connection {i} still open"));
        if said.contains("not received in full within 3 s") {
            assert!(said.contains(r#""codeDesc":"InvalidParameter""#), "{said}");
            timed_out += 1;
        }
    }
    assert!(timed_out > 0, "no body was read until its timeout");
    eprintln!("{timed_out} of {STALLED} stalled bodies ended by the body timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_past_the_open_file_limit_leave_the_api_and_the_nodes_alone() {
    const NOFILE: u64 = 256;
    const IDLE: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.nofile = Some(NOFILE);
    append_config(&d, "[api]\nheader_timeout_secs = 2\n");
    d.start().await;
    let c = d.client();
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();
    let pids = (pid_of(&d, &id, "master"), pid_of(&d, &id, "replica"));
    assert!(
        d.log().contains("derived_max_connections=128"),
        "the cap is the open-file limit minus the reserve"
    );

    // More connections than crsd may have descriptors: half say nothing, half send half a head.
    let addr = format!("127.0.0.1:{}", d.port);
    let mut opens = tokio::task::JoinSet::new();
    for i in 0..IDLE {
        let addr = addr.clone();
        opens.spawn(async move {
            let mut s = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(&addr))
                .await
                .ok()?
                .ok()?;
            if i % 2 == 1 {
                let _ = s
                    .write_all(b"GET /v2/index.php?Action=DescribeRedis HTTP/1.1\r\nHost: x\r\n")
                    .await;
            }
            Some(s)
        });
    }
    let mut idle = Vec::new();
    while let Some(s) = opens.join_next().await {
        idle.extend(s.unwrap());
    }
    assert!(idle.len() as u64 > NOFILE, "only {} connected", idle.len());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("connection limit reached") {
        assert!(
            Instant::now() < deadline,
            "the connection cap was not reached"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A new connection is answered once the idle ones time out (2 s a round).
    let fresh = d.client();
    let t = Instant::now();
    let v = tokio::time::timeout(
        Duration::from_secs(15),
        fresh.call("DescribeRedis", &[("limit", "10"), ("offset", "0")]),
    )
    .await
    .expect("the API answers while strangers hold idle connections");
    assert_eq!(v["code"], 0, "{v}");
    eprintln!(
        "{} idle connections, cap 128: a signed request answered after {:?}",
        idle.len(),
        t.elapsed()
    );
    // Meanwhile the supervisor (every 200 ms) kept seeing its nodes.
    assert_eq!(
        (pid_of(&d, &id, "master"), pid_of(&d, &id, "replica")),
        pids,
        "no redis-server was restarted"
    );
    let log = d.log();
    assert!(
        !log.contains("starting it"),
        "the supervisor took a healthy node for dead"
    );
    assert!(
        !log.contains("Too many open files"),
        "crsd ran out of descriptors"
    );
    drop(idle);
}

/// A crsd with small limits, to see each refusal.
async fn small_limits() -> TestCrsd {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.api.max_query_bytes = 4096;
    cfg.api.max_body_bytes = 64 << 10;
    // Long: a refusal that waited for the body would show.
    cfg.api.body_timeout_secs = 30;
    TestCrsd::start_with(dir, cfg).await
}

fn assert_v2(r: &Raw, code: i64, desc: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type(), Some("application/json"));
    let v = r.json();
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["codeDesc"], desc, "{v}");
}

fn assert_tc3(r: &Raw, code: &str) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.content_type(), Some("application/json"));
    let v = r.json();
    assert_eq!(v["Response"]["Error"]["Code"], code, "{v}");
    assert!(v["Response"]["RequestId"].is_string(), "{v}");
}

fn assert_co(r: &Raw, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    let v = r.json();
    assert_eq!(v["Code"], code, "{v}");
    assert!(v["Message"].is_string() && v.get("Data").is_some(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_long_queries_and_bodies_are_refused_in_each_dialects_shape() {
    let crsd = small_limits().await;
    let addr = crsd.url.trim_start_matches("http://").to_string();
    let quick = Duration::from_secs(2);
    let long = "x".repeat(5000);
    let get = |path: &str| {
        format!("GET {path}?Action=DescribeRedis&Filler={long} HTTP/1.1\r\nHost: {addr}\r\n\r\n")
    };
    // Announces more than max_body_bytes and sends none of it: refused at once.
    let big = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             {extra}Content-Length: 10485760\r\n\r\n"
        )
    };
    // No Content-Length: one chunk over the limit, and the body's end not sent yet.
    let chunked = |path: &str| {
        let n = (64 << 10) + 1;
        let mut b = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n"
        )
        .into_bytes();
        b.extend(vec![b'a'; n]);
        b.extend(b"\r\n");
        b
    };

    let r = answer_to(&addr, get("/v2/index.php").as_bytes(), quick).await;
    assert_v2(&r, 4000, "RequestSizeLimitExceeded");
    let r = answer_to(&addr, big("/v2/index.php", "").as_bytes(), quick).await;
    assert_v2(&r, 4000, "RequestSizeLimitExceeded");
    let r = answer_to(&addr, &chunked("/v2/index.php"), quick).await;
    assert_v2(&r, 4000, "RequestSizeLimitExceeded");

    let r = answer_to(&addr, get("/").as_bytes(), quick).await;
    assert_tc3(&r, "RequestSizeLimitExceeded");
    let r = answer_to(&addr, big("/", "").as_bytes(), quick).await;
    assert_tc3(&r, "RequestSizeLimitExceeded");
    let r = answer_to(&addr, &chunked("/"), quick).await;
    assert_tc3(&r, "RequestSizeLimitExceeded");

    for path in ["/redis", "/redis/"] {
        let r = answer_to(&addr, get(path).as_bytes(), quick).await;
        assert_co(&r, 413, "InvalidParameter");
        let r = answer_to(&addr, big(path, "").as_bytes(), quick).await;
        assert_co(&r, 413, "InvalidParameter");
        let r = answer_to(&addr, &chunked(path), quick).await;
        assert_co(&r, 413, "InvalidParameter");
    }

    // A method the dialects do not take, refused in shape too.
    let put = format!("PUT /v2/index.php HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    assert_v2(
        &answer_to(&addr, put.as_bytes(), quick).await,
        4000,
        "InvalidParameter",
    );

    // The credential's id in the head is checked before the body is read: a body announced
    // (within the limit) and not sent, and the answer comes anyway.
    let head = |path: &str, extra: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             {extra}Content-Length: 1000\r\n\r\n"
        )
    };
    let auth = format!(
        "Authorization: TC3-HMAC-SHA256 Credential=AKIDnobody/2026-01-01/redis/tc3_request, \
         SignedHeaders=content-type;host, Signature={}\r\nX-TC-Action: DescribeInstances\r\n",
        "0".repeat(64)
    );
    let r = answer_to(&addr, head("/", &auth).as_bytes(), quick).await;
    assert_tc3(&r, "AuthFailure.SecretIdNotFound");
    let r = answer_to(
        &addr,
        head("/redis?Action=DescribeDBInstances&AccessKeyId=nobody", "").as_bytes(),
        quick,
    )
    .await;
    assert_co(&r, 401, "InvalidAccessKeyId");

    // A known SecretId's body is awaited (and then the dialect's own checks answer).
    let known = auth.replace("AKIDnobody", &crsd.secret_id);
    let mut s = TcpStream::connect(&addr).await.unwrap();
    s.write_all(head("/", &known).as_bytes()).await.unwrap();
    let mut one = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut one))
            .await
            .is_err(),
        "a known SecretId's request waits for its body"
    );
    s.write_all(&[b' '; 1000]).await.unwrap();
    let mut out = String::new();
    let deadline = tokio::time::Instant::now() + quick;
    while !out.contains("RequestId") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("answered once the body is in")
            .unwrap();
        assert!(n > 0, "closed without an answer: {out}");
        out.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(out.contains(r#"{"Response":{"Error""#), "{out}");

    // A well-formed request still works.
    crsd.client()
        .ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_and_closes_a_stalled_handshake_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.key_pair.serialize_pem()).unwrap();
    cfg.tls.cert = Some(dir.path().join("cert.pem"));
    cfg.tls.key = Some(dir.path().join("key.pem"));
    cfg.api.header_timeout_secs = 1;
    let mut crsd = TestCrsd::start_with(dir, cfg).await;
    let mut c = crsd.client();
    c.http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    c.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;

    // A connection that never starts its handshake is closed after the header timeout.
    let addr = crsd.url.trim_start_matches("https://").to_string();
    let mut s = TcpStream::connect(&addr).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1 + 3);
    assert!(
        closed_by(&mut s, deadline).await.is_some(),
        "stalled handshake still open"
    );

    // Shutdown still drains and ends.
    tokio::time::timeout(Duration::from_secs(10), crsd.stop())
        .await
        .expect("shutdown ends");
}
