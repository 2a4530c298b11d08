//! Authentication of the v2 API over real HTTP: both signature methods and both transports,
//! every refusal (bad signature, unknown key, replays, missing common parameters, hosts),
//! per-account per-action rate limits, the `_`-in-keys rule and raw values, and the shape of
//! every error body. Requests are built by hand here so each can be bent one way.

mod common;

use base64::Engine as _;
use common::{sign_v2, TestCrsd, V2Client};
use crsd_core::clock::Clock;
use crsd_service::NewAccount;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};

const PASSWORD: &str = "49A2d!e@f12e";

// ---------------------------------------------------------------- helpers

/// Nonces of this file: apart from the harness's (pid * 1e6 + a small counter).
fn nonce() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    (std::process::id() as u64 * 1_000_000 + 700_000 + NEXT.fetch_add(1, Ordering::SeqCst))
        .to_string()
}

fn now(crsd: &TestCrsd) -> i64 {
    crsd.clock.now().timestamp()
}

/// The pairs a client sends before signing: the action's own, then the common ones.
fn unsigned(
    crsd: &TestCrsd,
    c: &V2Client,
    action: &str,
    params: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.push(("Action".into(), action.into()));
    all.push(("Region".into(), "gz".into()));
    all.push(("SecretId".into(), c.secret_id.clone()));
    all.push(("Nonce".into(), nonce()));
    all.push(("Timestamp".into(), now(crsd).to_string()));
    all
}

fn set(pairs: &mut Vec<(String, String)>, key: &str, value: &str) {
    pairs.retain(|(k, _)| k != key);
    pairs.push((key.into(), value.into()));
}

fn remove(pairs: &mut Vec<(String, String)>, key: &str) {
    pairs.retain(|(k, _)| k != key);
}

/// The string to sign as `qcloudapi-sdk-python` builds it: every pair but `Signature`, keys
/// with `_` as `.`, later pairs overwriting earlier ones under the same key (a dict), in POST
/// no value starting with `@`, sorted by key, values raw.
fn string_to_sign(method: &str, host: &str, pairs: &[(String, String)]) -> String {
    let mut dict = std::collections::BTreeMap::new();
    for (k, v) in pairs {
        if k == "Signature" || (method == "POST" && v.starts_with('@')) {
            continue;
        }
        dict.insert(k.replace('_', "."), v.clone());
    }
    let query: Vec<String> = dict.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{method}{host}/v2/index.php?{}", query.join("&"))
}

/// Signs `pairs` for `method` and `host` and appends the Signature; `sha256` picks the digest
/// (the `SignatureMethod` pair is the caller's business: see [`sha256`]).
fn signed(
    mut pairs: Vec<(String, String)>,
    method: &str,
    host: &str,
    key: &str,
    sha256: bool,
) -> Vec<(String, String)> {
    let sig = hmac_b64(key, &string_to_sign(method, host, &pairs), sha256);
    pairs.push(("Signature".into(), sig));
    pairs
}

/// Names HmacSHA256 in the pairs.
fn sha256(mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
    set(&mut pairs, "SignatureMethod", "HmacSHA256");
    pairs
}

fn hmac_b64(key: &str, msg: &str, sha256: bool) -> String {
    let raw = if sha256 {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    base64::engine::general_purpose::STANDARD.encode(raw)
}

fn form(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// One HTTP request to `/v2/index.php` with `query` on the URL and, when given, a form `body`
/// (POST must read only the body, GET only the query). Every answer is HTTP 200 with JSON.
async fn http(crsd: &TestCrsd, method: &str, query: &str, body: Option<String>) -> Value {
    let mut url = format!("{}/v2/index.php", crsd.url);
    if !query.is_empty() {
        url = format!("{url}?{query}");
    }
    let client = reqwest::Client::new();
    let mut req = match method {
        "POST" => client.post(&url),
        _ => client.get(&url),
    };
    if let Some(body) = body {
        req = req
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
    }
    let resp = req.send().await.expect("request reaches crsd");
    assert_eq!(resp.status(), 200, "v2 always answers HTTP 200");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(ct.starts_with("application/json"), "Content-Type {ct}");
    let text = resp.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("a JSON body ({e}): {text}"))
}

async fn get(crsd: &TestCrsd, pairs: &[(String, String)]) -> Value {
    http(crsd, "GET", &form(pairs), None).await
}

async fn post(crsd: &TestCrsd, pairs: &[(String, String)]) -> Value {
    http(crsd, "POST", "", Some(form(pairs))).await
}

async fn send(crsd: &TestCrsd, method: &str, pairs: &[(String, String)]) -> Value {
    if method == "POST" {
        post(crsd, pairs).await
    } else {
        get(crsd, pairs).await
    }
}

fn assert_ok(v: &Value) {
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["message"], "", "{v}");
    assert_eq!(v["codeDesc"], "Success", "{v}");
}

/// An error body: a non-zero integer `code`, a string `message` and `codeDesc`, nothing else.
fn assert_error(v: &Value, code: i64, desc: &str) {
    assert_eq!(v["code"], code, "{v}");
    assert!(v["code"].is_i64(), "code is a number: {v}");
    assert!(
        v["message"].as_str().is_some_and(|m| !m.is_empty()),
        "message is a non-empty string: {v}"
    );
    assert_eq!(v["codeDesc"], desc, "{v}");
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "an error carries code, message and codeDesc only: {v}"
    );
}

fn zones_answer(v: &Value) {
    assert_ok(v);
    assert_eq!(v["data"]["zones"][0]["100002"], "广州二区", "{v}");
}

async fn second_client(crsd: &TestCrsd) -> V2Client {
    let created = crsd
        .running
        .as_ref()
        .unwrap()
        .service
        .create_account(NewAccount {
            name: "second".into(),
            balance: 100_000_000,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut c = crsd.client();
    c.secret_id = created.secret_id;
    c.secret_key = created.secret_key;
    c
}

// ---------------------------------------------------------------- methods and transports

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_signature_methods_and_both_transports_are_accepted() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let host = c.host.clone();

    // This file's signer agrees with the harness's where both apply.
    let p = unsigned(
        &crsd,
        &c,
        "DescribeRedis",
        &[("limit", "10"), ("offset", "0")],
    );
    for sha in [false, true] {
        assert_eq!(
            signed(p.clone(), "GET", &host, &c.secret_key, sha)
                .pop()
                .unwrap()
                .1,
            sign_v2("GET", &host, &p, &c.secret_key, sha)
        );
    }

    // SignatureMethod absent, HmacSHA1, or anything but HmacSHA256: HMAC-SHA1.
    // SignatureMethod=HmacSHA256: HMAC-SHA256.
    for method in ["GET", "POST"] {
        for (sig_method, sha256) in [
            (None, false),
            (Some("HmacSHA1"), false),
            (Some("HmacSHA256"), true),
            (Some("hmacsha256"), false),
            (Some("HmacMD5"), false),
        ] {
            let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
            if let Some(m) = sig_method {
                set(&mut p, "SignatureMethod", m);
            }
            let v = send(
                &crsd,
                method,
                &signed(p, method, &host, &c.secret_key, sha256),
            )
            .await;
            zones_answer(&v);
        }
        // The other digest than the one named is refused.
        for (sig_method, sha256) in [
            (None, true),
            (Some("HmacSHA256"), false),
            (Some("HmacSHA1"), true),
        ] {
            let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
            if let Some(m) = sig_method {
                set(&mut p, "SignatureMethod", m);
            }
            let v = send(
                &crsd,
                method,
                &signed(p, method, &host, &c.secret_key, sha256),
            )
            .await;
            assert_error(&v, 4100, "AuthFailure.SignatureFailure");
        }
    }

    // The harness's client both ways (an action with parameters), and Token is signed too.
    for method in ["GET", "POST"] {
        for sha256 in [false, true] {
            let mut c2 = c.clone();
            c2.method = method;
            c2.sha256 = sha256;
            let v = c2
                .ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
                .await;
            assert_eq!(v["totalCount"], 0);
        }
    }
    let mut p = unsigned(
        &crsd,
        &c,
        "DescribeRedisZones",
        &[("Token", "tmpToken_abc")],
    );
    set(&mut p, "SignatureMethod", "HmacSHA256");
    zones_answer(&get(&crsd, &signed(p, "GET", &host, &c.secret_key, true)).await);

    // The method is part of what is signed.
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let v = post(&crsd, &signed(p, "GET", &host, &c.secret_key, false)).await;
    assert_error(&v, 4100, "AuthFailure.SignatureFailure");
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let v = get(&crsd, &signed(p, "POST", &host, &c.secret_key, false)).await;
    assert_error(&v, 4100, "AuthFailure.SignatureFailure");

    // POST reads the body and ignores the query string, whatever it holds.
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let body = form(&signed(p, "POST", &host, &c.secret_key, false));
    let v = http(
        &crsd,
        "POST",
        "Action=ClearRedis&Signature=garbage&SecretId=AKIDnobody&limit=x",
        Some(body),
    )
    .await;
    zones_answer(&v);
    // ... so a POST whose parameters are all in the query has none.
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let query = form(&signed(p, "POST", &host, &c.secret_key, false));
    let v = http(&crsd, "POST", &query, Some(String::new())).await;
    assert_error(&v, 4000, "MissingParameter");
    // GET reads the query only: a form body next to it is not read, nor is one alone.
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let v = http(
        &crsd,
        "GET",
        &form(&signed(p, "GET", &host, &c.secret_key, false)),
        Some("Action=ClearRedis&Signature=garbage".into()),
    )
    .await;
    zones_answer(&v);
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let body = form(&signed(p, "GET", &host, &c.secret_key, false));
    let v = http(&crsd, "GET", "", Some(body)).await;
    assert_error(&v, 4000, "MissingParameter");
}

// ---------------------------------------------------------------- refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_keys_replays_and_missing_parameters_are_refused() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let host = c.host.clone();
    let key = c.secret_key.clone();
    let sig_fail = "AuthFailure.SignatureFailure";

    // A value changed after signing; a parameter added; the signature itself changed.
    let good = signed(
        unsigned(
            &crsd,
            &c,
            "DescribeRedis",
            &[("limit", "10"), ("offset", "0")],
        ),
        "GET",
        &host,
        &key,
        false,
    );
    let mut tampered = good.clone();
    set(&mut tampered, "limit", "11");
    assert_error(&get(&crsd, &tampered).await, 4100, sig_fail);
    let mut added = good.clone();
    added.push(("redisId".into(), "crs-12345678".into()));
    assert_error(&get(&crsd, &added).await, 4100, sig_fail);
    let mut bad_sig = good.clone();
    let sig = bad_sig.pop().unwrap().1;
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    bad_sig.push(("Signature".into(), format!("{flipped}{}", &sig[1..])));
    assert_error(&get(&crsd, &bad_sig).await, 4100, sig_fail);
    // The wrong key for the SecretId.
    let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    let v = get(&crsd, &signed(p, "GET", &host, "not-the-secret-key", false)).await;
    assert_error(&v, 4100, sig_fail);
    // None of those used up the nonce of the good request.
    let v = get(&crsd, &good).await;
    assert_ok(&v);
    assert_eq!(v["totalCount"], 0);

    // An unknown SecretId.
    let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    set(&mut p, "SecretId", "AKIDnobodyHasThisKey0000000000000");
    let v = get(&crsd, &signed(p, "GET", &host, &key, false)).await;
    assert_error(&v, 4104, "AuthFailure.SecretIdNotFound");

    // Replays: the same request twice, and the same Nonce in another request.
    let once = signed(
        sha256(unsigned(&crsd, &c, "DescribeRedisZones", &[])),
        "GET",
        &host,
        &key,
        true,
    );
    zones_answer(&get(&crsd, &once).await);
    assert_error(&get(&crsd, &once).await, 4500, "RequestReplay");
    assert_error(&post(&crsd, &once).await, 4100, sig_fail);
    let used = once.iter().find(|(k, _)| k == "Nonce").unwrap().1.clone();
    let mut p = unsigned(&crsd, &c, "DescribeRedisProduct", &[]);
    set(&mut p, "Nonce", &used);
    let v = get(&crsd, &signed(p, "GET", &host, &key, false)).await;
    assert_error(&v, 4500, "RequestReplay");
    // Nonces are per SecretId: another account may use the same number.
    let other = second_client(&crsd).await;
    let mut p = unsigned(&crsd, &other, "DescribeRedisZones", &[]);
    set(&mut p, "Nonce", &used);
    zones_answer(&get(&crsd, &signed(p, "GET", &host, &other.secret_key, false)).await);
    // A request whose signature fails does not use up its nonce.
    let fresh = nonce();
    let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    set(&mut p, "Nonce", &fresh);
    let v = get(&crsd, &signed(p.clone(), "GET", &host, "wrong", false)).await;
    assert_error(&v, 4100, sig_fail);
    zones_answer(&get(&crsd, &signed(p, "GET", &host, &key, false)).await);

    // Timestamp: more than 300 s off either way is a replay; within it is fine.
    for (offset, ok) in [(-301, false), (301, false), (-290, true), (290, true)] {
        let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
        set(&mut p, "Timestamp", &(now(&crsd) + offset).to_string());
        let v = get(&crsd, &signed(p, "GET", &host, &key, false)).await;
        if ok {
            zones_answer(&v);
        } else {
            assert_error(&v, 4500, "RequestReplay");
        }
    }
    // The window follows crsd's clock, not the test's wall clock.
    crsd.clock.advance(chrono::Duration::hours(1));
    let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    set(
        &mut p,
        "Timestamp",
        &chrono::Utc::now().timestamp().to_string(),
    );
    let v = get(&crsd, &signed(p, "GET", &host, &key, false)).await;
    assert_error(&v, 4500, "RequestReplay");

    // Missing or malformed common parameters.
    for missing in ["Signature", "Nonce", "Action", "SecretId", "Timestamp"] {
        let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
        remove(&mut p, missing);
        let mut p = signed(p, "GET", &host, &key, false);
        if missing == "Signature" {
            remove(&mut p, "Signature");
        }
        let v = get(&crsd, &p).await;
        assert_error(&v, 4000, "MissingParameter");
        assert!(
            v["message"].as_str().unwrap().contains(missing),
            "the message names {missing}: {v}"
        );
    }
    for (key_name, value) in [("Nonce", "abc"), ("Nonce", "0"), ("Timestamp", "yesterday")] {
        let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
        set(&mut p, key_name, value);
        let v = get(&crsd, &signed(p, "GET", &host, &key, false)).await;
        assert_error(&v, 4000, "InvalidParameter");
    }
    // Region is optional.
    let mut p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
    remove(&mut p, "Region");
    zones_answer(&get(&crsd, &signed(p, "GET", &host, &key, false)).await);
    // Nothing at all.
    assert_error(
        &http(&crsd, "GET", "", None).await,
        4000,
        "MissingParameter",
    );
    assert_error(
        &http(&crsd, "POST", "", Some(String::new())).await,
        4000,
        "MissingParameter",
    );
    // A signed but unknown action; a documented action not carried out yet.
    let v = get(
        &crsd,
        &signed(
            unsigned(&crsd, &c, "DescribeNothing", &[]),
            "GET",
            &host,
            &key,
            false,
        ),
    )
    .await;
    assert_error(&v, 4000, "InvalidAction");
    let v = get(
        &crsd,
        &signed(
            unsigned(&crsd, &c, "ManualBackupInstance", &[("redisId", "crs-1")]),
            "GET",
            &host,
            &key,
            false,
        ),
    )
    .await;
    assert_error(&v, 5000, "InstanceNotExists");

    // Hosts: the Host header as sent, or a configured public host; nothing else.
    assert!(crsd
        .config
        .api
        .public_hosts
        .contains(&"redis.api.qcloud.com".to_string()));
    for method in ["GET", "POST"] {
        let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
        let v = send(
            &crsd,
            method,
            &signed(sha256(p), method, "redis.api.qcloud.com", &key, true),
        )
        .await;
        zones_answer(&v);
        for other_host in ["evil.example.com", "127.0.0.1", "redis.api.qcloud.com:443"] {
            let p = unsigned(&crsd, &c, "DescribeRedisZones", &[]);
            let v = send(
                &crsd,
                method,
                &signed(sha256(p), method, other_host, &key, true),
            )
            .await;
            assert_error(&v, 4100, sig_fail);
        }
    }
}

// ---------------------------------------------------------------- rate limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_per_account_and_per_action() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.api.rate_per_second = 1.0;
    cfg.api.rate_burst = 2.0;
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let c = crsd.client();

    zones_answer(&c.call("DescribeRedisZones", &[]).await);
    zones_answer(&c.call("DescribeRedisZones", &[]).await);
    let v = c.call("DescribeRedisZones", &[]).await;
    assert_error(&v, 4400, "RequestLimitExceeded");
    // Another action of the same account, and the same action of another account, pass.
    c.ok("DescribeRedisProduct", &[]).await;
    let other = second_client(&crsd).await;
    zones_answer(&other.call("DescribeRedisZones", &[]).await);
    // Refused requests are refused before the limiter and take no token (bucket still empty).
    let mut bad = c.signed("DescribeRedisZones", &[]);
    set(&mut bad, "Signature", "x");
    assert_error(&c.send(&bad).await, 4100, "AuthFailure.SignatureFailure");
    // A second later the bucket holds a token again.
    // (At most two tokens, the burst, whatever the time the steps above took.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    zones_answer(&c.call("DescribeRedisZones", &[]).await);
    let mut limited = false;
    for _ in 0..2 {
        let v = c.call("DescribeRedisZones", &[]).await;
        if v["code"] == 0 {
            continue;
        }
        assert_error(&v, 4400, "RequestLimitExceeded");
        limited = true;
        break;
    }
    assert!(limited, "the burst is 2");
}

// ---------------------------------------------------------------- keys and values

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn underscore_keys_and_raw_values_survive_signing() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let host = c.host.clone();
    let key = c.secret_key.clone();

    let v = c
        .ok(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", "1"),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await;
    let deal = v["data"]["dealId"].as_str().unwrap().to_string();
    let id = c.wait_deal(&deal).await.remove(0);

    // `dealIds_0` is signed as `dealIds.0` and read as it.
    for method in ["GET", "POST"] {
        let p = unsigned(
            &crsd,
            &c,
            "DescribeRedisDealDetail",
            &[("dealIds_0", &deal)],
        );
        let v = send(&crsd, method, &signed(p, method, &host, &key, false)).await;
        assert_ok(&v);
        assert_eq!(v["dealDetails"][0]["dealId"], deal.as_str(), "{v}");
    }
    // Signing the key as it travels (with `_`) is not the rule.
    let mut p = unsigned(
        &crsd,
        &c,
        "DescribeRedisDealDetail",
        &[("dealIds_0", &deal)],
    );
    let mut sorted = p.clone();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let msg = format!("GET{host}/v2/index.php?{}", query.join("&"));
    p.push(("Signature".into(), hmac_b64(&key, &msg, false)));
    assert_error(&get(&crsd, &p).await, 4100, "AuthFailure.SignatureFailure");
    // When `x_0` and `x.0` both come, the later one wins, for the signature and the value.
    let p = unsigned(
        &crsd,
        &c,
        "DescribeRedisDealDetail",
        &[("dealIds_0", "999999"), ("dealIds.0", &deal)],
    );
    let v = get(&crsd, &signed(p, "GET", &host, &key, false)).await;
    assert_ok(&v);
    assert_eq!(v["dealDetails"][0]["dealId"], deal.as_str(), "{v}");

    // `redisIds_0` and `projectIds_0` as the action's arrays.
    let p = unsigned(
        &crsd,
        &c,
        "ModifyRedisProject",
        &[("redisIds_0", &id), ("projectId", "7")],
    );
    assert_ok(&get(&crsd, &signed(sha256(p), "GET", &host, &key, true)).await);
    for (project, count) in [("7", 1), ("0", 0)] {
        let p = unsigned(
            &crsd,
            &c,
            "DescribeRedis",
            &[("limit", "10"), ("offset", "0"), ("projectIds_0", project)],
        );
        let v = post(&crsd, &signed(sha256(p), "POST", &host, &key, true)).await;
        assert_ok(&v);
        assert_eq!(v["totalCount"], count, "projectIds_0={project}: {v}");
    }

    // Values are signed raw: `&`, `=`, `+`, space, `/`, `%`, UTF-8, both transports.
    let odd = "a&b=c+d e/f%20中?#";
    for method in ["GET", "POST"] {
        let p = unsigned(
            &crsd,
            &c,
            "DescribeRedis",
            &[("limit", "10"), ("offset", "0"), ("redisName", odd)],
        );
        let v = send(&crsd, method, &signed(p, method, &host, &key, false)).await;
        assert_ok(&v);
        assert_eq!(v["totalCount"], 0, "{v}");
        // A wrong password with the same characters reaches ClearRedis's own check.
        let p = unsigned(
            &crsd,
            &c,
            "ClearRedis",
            &[("redisId", &id), ("password", odd)],
        );
        let v = send(&crsd, method, &signed(sha256(p), method, &host, &key, true)).await;
        assert_error(&v, 5100, "PasswordError");
    }
    // Chinese names through POST and GET land as sent.
    for (method, name) in [("POST", "测试API专用"), ("GET", "名字_二-b")] {
        let p = unsigned(
            &crsd,
            &c,
            "ModifyRedisName",
            &[("redisId", &id), ("redisName", name)],
        );
        assert_ok(&send(&crsd, method, &signed(p, method, &host, &key, false)).await);
        let p = unsigned(
            &crsd,
            &c,
            "DescribeRedis",
            &[("limit", "10"), ("offset", "0"), ("redisName", name)],
        );
        let v = send(&crsd, method, &signed(p, method, &host, &key, false)).await;
        assert_eq!(v["totalCount"], 1, "{v}");
        assert_eq!(v["data"]["redisSet"][0]["redisName"], name, "{v}");
    }
    assert_eq!(c.describe_one(&id).await["redisName"], "名字_二-b");

    // POST values starting with `@` are left out of the signature, as the public SDK does.
    let p = unsigned(
        &crsd,
        &c,
        "ClearRedis",
        &[("redisId", &id), ("password", "@Wrong1234")],
    );
    let v = post(&crsd, &signed(p, "POST", &host, &key, false)).await;
    assert_error(&v, 5100, "PasswordError");
}

/// A used Nonce stays used after crsd restarts (the replay journal).
#[tokio::test]
async fn a_used_nonce_stays_used_across_a_restart() {
    let mut crsd = TestCrsd::start_restartable().await;
    let c = crsd.client();
    let (host, key) = (c.host.clone(), c.secret_key.clone());
    let once = signed(
        sha256(unsigned(&crsd, &c, "DescribeRedisZones", &[])),
        "GET",
        &host,
        &key,
        true,
    );
    zones_answer(&get(&crsd, &once).await);
    crsd.restart().await;
    assert_error(&get(&crsd, &once).await, 4500, "RequestReplay");
}
