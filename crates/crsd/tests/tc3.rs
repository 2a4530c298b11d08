//! The Tencent Cloud API 3.0 dialect (redis 2018-04-12) end to end: real HTTP on `/`, real
//! redis-server processes, real backup files. Requests are signed here, by a small TC3 and
//! old-signature signer written from Tencent's documentation and the SDK captures
//! (independent of `crsd_api::sign_tc3`). Most instances are made through v2 `CreateRedis`,
//! which also shows that one instance serves both dialects.

mod common;

use base64::Engine as _;
use common::{parse_time, redis_conn, TestCrsd, V2Client};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "49A2d!e@f12e";
const VERSION: &str = "2018-04-12";

// ------------------------------------------------------------------------------ the signer

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// The UTC date of a Unix timestamp, `YYYY-MM-DD`.
fn utc_date(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

/// What a TC3 request signs: the method, the raw query, the Content-Type and Host header
/// values and the body.
struct Tc3Parts<'a> {
    method: &'a str,
    host: &'a str,
    query: &'a str,
    content_type: &'a str,
    payload: &'a [u8],
    timestamp: i64,
}

/// `Authorization: TC3-HMAC-SHA256 Credential=.., SignedHeaders=content-type;host, Signature=..`
fn tc3_authorization(secret_id: &str, secret_key: &str, p: &Tc3Parts) -> String {
    let canonical = format!(
        "{}\n/\n{}\ncontent-type:{}\nhost:{}\n\ncontent-type;host\n{}",
        p.method,
        p.query,
        p.content_type,
        p.host,
        sha256_hex(p.payload)
    );
    let date = utc_date(p.timestamp);
    let scope = format!("{date}/redis/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{}\n{scope}\n{}",
        p.timestamp,
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac256(&k_date, b"redis");
    let k_signing = hmac256(&k_service, b"tc3_request");
    let signature = hex(&hmac256(&k_signing, to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, \
         Signature={signature}"
    )
}

/// The 3.0 old signature: base64(HMAC-SHA256(key, METHOD + host + "/?" + sorted raw k=v)).
fn old_signature(method: &str, host: &str, params: &[(String, String)], key: &str) -> String {
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (k.replace('_', "."), v.clone()))
        .collect();
    sorted.sort();
    let q: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let msg = format!("{method}{host}/?{}", q.join("&"));
    base64::engine::general_purpose::STANDARD.encode(hmac256(key.as_bytes(), msg.as_bytes()))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

// ------------------------------------------------------------------------------ the client

static NONCE: AtomicU64 = AtomicU64::new(1);

fn next_nonce() -> u64 {
    NONCE.fetch_add(1, Ordering::SeqCst) + (std::process::id() as u64) * 1_000_000 + 7_000_000_000
}

/// One raw API 3.0 request; every field can be bent for the refusal tests.
struct Req {
    method: &'static str,
    action: Option<String>,
    version: String,
    timestamp: i64,
    query: String,
    body: Vec<u8>,
    content_type: &'static str,
    /// Sign with this key instead of the account's.
    sign_key: Option<String>,
    /// Send this SecretId instead of the account's.
    secret_id: Option<String>,
    /// Send this Authorization instead of a computed one.
    authorization: Option<String>,
    /// Send (and sign) this Host instead of the URL's authority.
    host: Option<String>,
}

#[derive(Clone)]
struct Tc3Client {
    url: String,
    host: String,
    secret_id: String,
    secret_key: String,
    clock: Arc<crsd_core::clock::OffsetClock>,
    http: reqwest::Client,
    /// Authorization headers sent by `call` (a change must not reuse one).
    used: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// An answer, checked for what every 3.0 answer must be: HTTP 200, `Content-Type:
/// application/json` exactly, `{"Response": {..., "RequestId": UUID}}`.
fn checked(status: u16, content_type: Option<String>, body: &str) -> Value {
    assert_eq!(status, 200, "3.0 always answers 200: {body}");
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "Content-Type exactly application/json: {body}"
    );
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON: {e}: {body}"));
    let r = v["Response"].clone();
    assert!(r.is_object(), "a Response object: {body}");
    let rid = r["RequestId"].as_str().unwrap_or_default();
    assert!(is_uuid(rid), "RequestId is a UUID: {body}");
    r
}

impl Tc3Client {
    fn new(crsd: &TestCrsd) -> Tc3Client {
        Tc3Client {
            url: crsd.url.clone(),
            host: crsd.url.split("://").nth(1).unwrap().to_string(),
            secret_id: crsd.secret_id.clone(),
            secret_key: crsd.secret_key.clone(),
            clock: crsd.clock.clone(),
            http: reqwest::Client::new(),
            used: Default::default(),
        }
    }

    fn now(&self) -> i64 {
        crsd_core::clock::Clock::now(&*self.clock).timestamp()
    }

    /// A TC3 POST with a JSON body, as the SDK sends it.
    fn post(&self, action: &str, params: &Value) -> Req {
        Req {
            method: "POST",
            action: Some(action.to_string()),
            version: VERSION.into(),
            timestamp: self.now(),
            query: String::new(),
            body: serde_json::to_vec(params).unwrap(),
            content_type: "application/json",
            sign_key: None,
            secret_id: None,
            authorization: None,
            host: None,
        }
    }

    /// A TC3 GET with the parameters in the query.
    fn get(&self, action: &str, query: &str) -> Req {
        Req {
            method: "GET",
            query: query.to_string(),
            body: Vec::new(),
            content_type: "application/x-www-form-urlencoded",
            ..self.post(action, &json!({}))
        }
    }

    /// The Authorization header the SDK would send for `r`.
    fn authorization(&self, r: &Req) -> String {
        let host = r.host.clone().unwrap_or_else(|| self.host.clone());
        let secret_id = r.secret_id.as_ref().unwrap_or(&self.secret_id);
        let key = r.sign_key.as_ref().unwrap_or(&self.secret_key);
        tc3_authorization(
            secret_id,
            key,
            &Tc3Parts {
                method: r.method,
                host: &host,
                query: &r.query,
                content_type: r.content_type,
                payload: &r.body,
                timestamp: r.timestamp,
            },
        )
    }

    async fn send(&self, r: Req) -> Value {
        let host = r.host.clone().unwrap_or_else(|| self.host.clone());
        let auth = r
            .authorization
            .clone()
            .unwrap_or_else(|| self.authorization(&r));
        let url = if r.query.is_empty() {
            format!("{}/", self.url)
        } else {
            format!("{}/?{}", self.url, r.query)
        };
        let mut req = if r.method == "POST" {
            self.http.post(&url).body(r.body.clone())
        } else {
            self.http.get(&url)
        };
        req = req
            .header("Host", &host)
            .header("Content-Type", r.content_type)
            .header("Authorization", auth)
            .header("X-TC-Timestamp", r.timestamp.to_string())
            .header("X-TC-Version", &r.version)
            .header("X-TC-Region", "ap-guangzhou")
            .header("X-TC-Language", "zh-CN")
            .header("X-TC-RequestClient", "crsd-tc3-test");
        if let Some(a) = &r.action {
            req = req.header("X-TC-Action", a);
        }
        let resp = req.send().await.expect("request reaches crsd");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        checked(status, ct, &body)
    }

    /// Signs and sends as the SDK does. crsd accepts a change only with a signature never
    /// used before, and requests with the same body in the same second sign alike: such a
    /// change waits for a new second, as a script must. Reads may use a used signature.
    async fn call(&self, action: &str, params: Value) -> Value {
        let reads = (action.starts_with("Describe") || action.starts_with("InquiryPrice"))
            && action != "DescribeBackupUrl";
        loop {
            let r = self.post(action, &params);
            let auth = self.authorization(&r);
            let fresh = self.used.lock().unwrap().insert(auth.clone());
            if reads || fresh {
                return self
                    .send(Req {
                        authorization: Some(auth),
                        ..r
                    })
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ok(&self, action: &str, params: Value) -> Value {
        let r = self.call(action, params).await;
        assert!(r.get("Error").is_none(), "{action} failed: {r}");
        r
    }

    async fn err(&self, action: &str, params: Value, code: &str) -> Value {
        let r = self.call(action, params).await;
        assert_error(&r, code, action);
        r
    }

    /// The old-signature form (SignatureMethod=HmacSHA256), POSTed as a form; returns the
    /// signed pairs too, to replay them.
    fn old_form(&self, action: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for (k, v) in [
            ("Action", action.to_string()),
            ("RequestClient", "crsd-tc3-test".into()),
            ("Nonce", next_nonce().to_string()),
            ("Timestamp", self.now().to_string()),
            ("Version", VERSION.into()),
            ("Region", "ap-guangzhou".into()),
            ("SecretId", self.secret_id.clone()),
            ("SignatureMethod", "HmacSHA256".into()),
            ("Language", "zh-CN".into()),
        ] {
            all.push((k.to_string(), v));
        }
        let sig = old_signature("POST", &self.host, &all, &self.secret_key);
        all.push(("Signature".into(), sig));
        all
    }

    async fn send_old(&self, pairs: &[(String, String)]) -> Value {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let resp = self
            .http
            .post(format!("{}/", self.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request reaches crsd");
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let body = resp.text().await.unwrap();
        checked(status, ct, &body)
    }

    /// Polls DescribeTaskInfo until the task leaves preparing/running; returns the last answer.
    async fn wait_task(&self, task: i64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.ok("DescribeTaskInfo", json!({ "TaskId": task })).await;
            let s = r["Status"]
                .as_str()
                .unwrap_or_else(|| panic!("Status: {r}"));
            if s != "preparing" && s != "running" {
                return r;
            }
            assert!(Instant::now() < deadline, "task {task} did not end: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn assert_error(r: &Value, code: &str, what: &str) {
    assert_eq!(r["Error"]["Code"], code, "{what}: {r}");
    assert!(
        r["Error"]["Message"].as_str().is_some(),
        "{what}: a Message: {r}"
    );
    for k in r.as_object().unwrap().keys() {
        assert!(
            k == "Error" || k == "RequestId",
            "{what}: only Error and RequestId in an error Response: {r}"
        );
    }
}

fn ids_of(r: &Value) -> Vec<String> {
    r["InstanceSet"]
        .as_array()
        .unwrap_or_else(|| panic!("InstanceSet: {r}"))
        .iter()
        .map(|i| i["InstanceId"].as_str().unwrap().to_string())
        .collect()
}

async fn create(c: &V2Client, n: i64) -> Vec<Value> {
    c.create(PASSWORD, n).await
}

fn v2_id(inst: &Value) -> String {
    inst["redisId"].as_str().unwrap().to_string()
}

async fn get(conn: &mut redis::aio::MultiplexedConnection, k: &str) -> Option<String> {
    redis::cmd("GET").arg(k).query_async(conn).await.unwrap()
}

async fn set(conn: &mut redis::aio::MultiplexedConnection, k: &str, v: &str) {
    redis::cmd("SET")
        .arg(k)
        .arg(v)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

async fn del(conn: &mut redis::aio::MultiplexedConnection, k: &str) {
    redis::cmd("DEL")
        .arg(k)
        .query_async::<()>(conn)
        .await
        .unwrap();
}

// ------------------------------------------------------------------------------ the tests

#[tokio::test]
async fn describe_instances_over_tc3_post_get_and_the_old_signature() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 2).await;
    let mut want: Vec<String> = made.iter().map(v2_id).collect();
    want.sort();

    // TC3 POST JSON: both listed, with address, status 2 and size 1024.0.
    let r = c
        .ok("DescribeInstances", json!({"Limit": 10, "Offset": 0}))
        .await;
    assert_eq!(r["TotalCount"], 2, "{r}");
    let mut got = ids_of(&r);
    got.sort();
    assert_eq!(got, want, "{r}");
    for inst in &made {
        let e = r["InstanceSet"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["InstanceId"] == inst["redisId"])
            .unwrap();
        assert_eq!(e["WanIp"], inst["wanIp"], "{e}");
        assert_eq!(e["Port"], inst["port"], "{e}");
        assert!(e["WanIp"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
        assert!(e["Port"].as_u64().is_some_and(|p| p > 0), "{e}");
        assert_eq!(e["Status"], 2, "{e}");
        assert!(e["Size"].is_f64(), "Size is a float: {e}");
        assert_eq!(e["Size"].as_f64(), Some(1024.0), "{e}");
        assert_instance_set_fields(e);
    }

    // InstanceId filter.
    let r = c
        .ok(
            "DescribeInstances",
            json!({"InstanceId": want[1], "Limit": 10}),
        )
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    assert_eq!(ids_of(&r), vec![want[1].clone()], "{r}");
    let r = c
        .ok("DescribeInstances", json!({"InstanceId": "crs-nosuch00"}))
        .await;
    assert_eq!(r["TotalCount"], 0, "{r}");
    assert_eq!(ids_of(&r), Vec::<String>::new(), "{r}");

    // Limit/Offset pages through both, TotalCount the whole.
    let p0 = c
        .ok("DescribeInstances", json!({"Limit": 1, "Offset": 0}))
        .await;
    let p1 = c
        .ok("DescribeInstances", json!({"Limit": 1, "Offset": 1}))
        .await;
    let p2 = c
        .ok("DescribeInstances", json!({"Limit": 1, "Offset": 2}))
        .await;
    assert_eq!(
        (&p0["TotalCount"], &p1["TotalCount"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(ids_of(&p0).len(), 1, "{p0}");
    assert_eq!(ids_of(&p1).len(), 1, "{p1}");
    assert_eq!(ids_of(&p2).len(), 0, "{p2}");
    let mut paged = [ids_of(&p0), ids_of(&p1)].concat();
    paged.sort();
    assert_eq!(paged, want);

    // TC3 GET, parameters in the query.
    let r = c
        .send(c.get("DescribeInstances", "Limit=10&Offset=0"))
        .await;
    assert!(r.get("Error").is_none(), "{r}");
    assert_eq!(r["TotalCount"], 2, "{r}");
    let mut got = ids_of(&r);
    got.sort();
    assert_eq!(got, want);
    let r = c
        .send(c.get(
            "DescribeInstances",
            &format!("InstanceId={}&Limit=10&Offset=0", want[0]),
        ))
        .await;
    assert_eq!(ids_of(&r), vec![want[0].clone()], "{r}");

    // TC3 with the Host tccli sends for `--endpoint http://HOST:PORT`, signed verbatim.
    let mut req = c.post("DescribeInstances", &json!({"Limit": 10}));
    req.host = Some(format!("http://{}", c.host));
    let r = c.send(req).await;
    assert!(r.get("Error").is_none(), "tccli-style Host: {r}");
    assert_eq!(r["TotalCount"], 2, "{r}");

    // The old signature (form POST, HmacSHA256).
    let form = c.old_form("DescribeInstances", &[("Limit", "10"), ("Offset", "0")]);
    let r = c.send_old(&form).await;
    assert!(r.get("Error").is_none(), "old signature: {r}");
    assert_eq!(r["TotalCount"], 2, "{r}");
    let mut got = ids_of(&r);
    got.sort();
    assert_eq!(got, want);
    // ... replayed as is: its Nonce was used.
    let r = c.send_old(&form).await;
    assert_error(
        &r,
        "AuthFailure.InvalidAuthorization",
        "old signature replayed",
    );
    assert!(
        r["Error"]["Message"].as_str().unwrap().contains("Nonce"),
        "{r}"
    );
    // ... with a filter and a bad signature.
    let form = c.old_form(
        "DescribeInstances",
        &[("InstanceId", &want[1]), ("Limit", "10")],
    );
    let r = c.send_old(&form).await;
    assert_eq!(ids_of(&r), vec![want[1].clone()], "{r}");
    let mut form = c.old_form("DescribeInstances", &[("Limit", "10")]);
    let n = form.len();
    form[n - 1].1 = old_signature("POST", &c.host, &form, "not-the-key");
    let r = c.send_old(&form).await;
    assert_error(
        &r,
        "AuthFailure.SignatureFailure",
        "old signature, wrong key",
    );
}

/// A restore of an instance with 3 replicas: every node ends with exactly the backup's
/// data, and no replica copied the data set from the master (each loaded the backup itself
/// and continued from the replication offset it records).
#[tokio::test]
async fn restore_with_three_replicas_loads_the_backup_on_every_node_without_a_full_sync() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let r = c
        .ok(
            "CreateInstances",
            json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "BillingMode": 0,
                "ZoneId": 100002, "Password": PASSWORD, "RedisReplicasNum": 3}),
        )
        .await;
    let id = v2.wait_deal(r["DealId"].as_str().unwrap()).await[0].clone();
    let inst = common::service(&crsd)
        .store()
        .instance(&id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(inst.nodes.len(), 4);
    let mut m = redis_conn(&inst.vip, inst.port(), PASSWORD).await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET")
            .arg(format!("k:{i}"))
            .arg(format!("a{i}"))
            .ignore();
    }
    pipe.query_async::<()>(&mut m).await.unwrap();

    let r = c
        .ok(
            "ManualBackupInstance",
            json!({"InstanceId": id, "Remark": "three replicas"}),
        )
        .await;
    let t = c.wait_task(r["TaskId"].as_i64().unwrap()).await;
    assert_eq!(t["Status"], "succeed", "{t}");
    let r = c
        .ok(
            "DescribeInstanceBackups",
            json!({"InstanceId": id, "Limit": 10, "Offset": 0}),
        )
        .await;
    let backup_id = r["BackupSet"][0]["BackupId"].as_str().unwrap().to_string();

    set(&mut m, "k:0", "changed").await;
    set(&mut m, "new", "b").await;
    let r = c
        .ok(
            "RestoreInstance",
            json!({"InstanceId": id, "BackupId": backup_id, "Password": PASSWORD}),
        )
        .await;
    let t = c.wait_task(r["TaskId"].as_i64().unwrap()).await;
    assert_eq!(t["Status"], "succeed", "{t}");

    for node in &inst.nodes {
        let mut n = redis_conn(&inst.vip, node.port, PASSWORD).await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut n)
            .await
            .unwrap();
        assert_eq!(keys.len(), 500, "{}: {keys:?}", node.id);
        assert_eq!(
            get(&mut n, "k:0").await.as_deref(),
            Some("a0"),
            "{}",
            node.id
        );
        assert_eq!(
            get(&mut n, "k:499").await.as_deref(),
            Some("a499"),
            "{}",
            node.id
        );
    }
    let mut admin = common::admin_conn(&common::service(&crsd), &id).await;
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(stats.contains("\r\nsync_full:0\r\n"), "{stats}");
    assert!(stats.contains("\r\nsync_partial_ok:3\r\n"), "{stats}");
    // Writes are taken again, and reach every replica.
    let mut m = redis_conn(&inst.vip, inst.port(), PASSWORD).await.unwrap();
    set(&mut m, "after", "yes").await;
    let acked: i64 = redis::cmd("WAIT")
        .arg(3)
        .arg(5000)
        .query_async(&mut m)
        .await
        .unwrap();
    assert_eq!(acked, 3);
}

#[tokio::test]
async fn backup_download_and_restore_over_tc3_and_across_dialects() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let inst = &create(&v2, 1).await[0];
    let id = v2_id(inst);
    let host = inst["wanIp"].as_str().unwrap();
    let port = inst["port"].as_u64().unwrap() as u16;
    let mut conn = redis_conn(host, port, PASSWORD).await.unwrap();
    set(&mut conn, "bk:1", "one").await;
    set(&mut conn, "bk:2", "two").await;

    // ManualBackupInstance -> TaskId -> DescribeTaskInfo "succeed".
    let r = c
        .ok(
            "ManualBackupInstance",
            json!({"InstanceId": id, "Remark": "tc3 backup"}),
        )
        .await;
    let task = r["TaskId"]
        .as_i64()
        .unwrap_or_else(|| panic!("TaskId: {r}"));
    let t = c.wait_task(task).await;
    assert_eq!(t["Status"], "succeed", "{t}");
    assert_eq!(t["InstanceId"], id.as_str(), "{t}");

    // DescribeInstanceBackups: under BackupSet.
    let r = c
        .ok(
            "DescribeInstanceBackups",
            json!({"InstanceId": id, "Limit": 10, "Offset": 0}),
        )
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    let b = &r["BackupSet"][0];
    let backup_id = b["BackupId"]
        .as_str()
        .unwrap_or_else(|| panic!("BackupId: {r}"))
        .to_string();
    assert!(!backup_id.is_empty());
    assert_eq!(b["Status"], 2, "{b}");
    assert_eq!(b["Locked"], 0, "{b}");
    assert_eq!(b["BackupType"], "0", "{b}");
    assert_eq!(b["Remark"], "tc3 backup", "{b}");
    assert_eq!(b["InstanceId"], id.as_str(), "{b}");
    // Kept the operator's retention (7 days by default) from the backup's start.
    assert_eq!(
        parse_time(&crsd, &b["ExpireTime"]) - parse_time(&crsd, &b["StartTime"]),
        chrono::Duration::days(7),
        "{b}"
    );

    // The same over TC3 GET: a flattened list and an encoded time in the signed raw query.
    let r = c
        .send(c.get(
            "DescribeInstanceBackups",
            &format!("InstanceId={id}&Status.0=2&BeginTime=2000-01-01+00%3A00%3A00&Limit=10"),
        ))
        .await;
    assert!(r.get("Error").is_none(), "{r}");
    assert_eq!(r["BackupSet"][0]["BackupId"], backup_id.as_str(), "{r}");
    let r = c
        .send(c.get(
            "DescribeInstanceBackups",
            &format!("InstanceId={id}&Status.0=1"),
        ))
        .await;
    assert_eq!(r["BackupSet"], json!([]), "no backup in progress: {r}");

    // The same backup through v2 GetRedisBackupList.
    let l = v2
        .ok(
            "GetRedisBackupList",
            &[("redisId", &id), ("limit", "10"), ("offset", "0")],
        )
        .await;
    let listed: Vec<&Value> = l["data"]["redisBackupSet"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["backupId"] == backup_id.as_str())
        .collect();
    assert_eq!(listed.len(), 1, "3.0 backup listed by v2: {l}");
    assert_eq!(listed[0]["remark"], "tc3 backup", "{l}");
    assert_eq!(listed[0]["backupType"], "manualBackupInstance", "{l}");

    // DescribeBackupUrl: the file downloads, is an RDB, FileSize bytes long.
    let r = c
        .ok(
            "DescribeBackupUrl",
            json!({"InstanceId": id, "BackupId": backup_id}),
        )
        .await;
    let info = &r["BackupInfos"][0];
    let url = info["DownloadUrl"]
        .as_str()
        .unwrap_or_else(|| panic!("BackupInfos[0].DownloadUrl: {r}"))
        .to_string();
    assert_eq!(r["DownloadUrl"][0], url.as_str(), "{r}");
    let size = info["FileSize"]
        .as_u64()
        .unwrap_or_else(|| panic!("FileSize: {r}"));
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    let body = resp.bytes().await.unwrap();
    assert!(
        body.starts_with(b"REDIS00"),
        "{:?}",
        &body[..body.len().min(16)]
    );
    assert_eq!(body.len() as u64, size, "FileSize");
    let inner = info["InnerDownloadUrl"].as_str().unwrap();
    let resp = reqwest::get(inner).await.unwrap();
    assert_eq!(resp.status(), 200, "{inner}");
    assert_eq!(resp.bytes().await.unwrap(), body);

    // Other data, then RestoreInstance brings the backup back.
    set(&mut conn, "bk:1", "changed").await;
    del(&mut conn, "bk:2").await;
    set(&mut conn, "bk:3", "new").await;

    c.err(
        "RestoreInstance",
        json!({"InstanceId": id, "BackupId": backup_id, "Password": "Wrong123pw"}),
        "InvalidParameterValue.PasswordError",
    )
    .await;
    c.err(
        "RestoreInstance",
        json!({"InstanceId": id, "BackupId": "no-such-backup", "Password": PASSWORD}),
        "InvalidParameterValue.BackupNotExists",
    )
    .await;
    c.err(
        "DescribeBackupUrl",
        json!({"InstanceId": id, "BackupId": "no-such-backup"}),
        "InvalidParameterValue.BackupNotExists",
    )
    .await;
    assert_eq!(get(&mut conn, "bk:1").await.as_deref(), Some("changed"));

    let r = c
        .ok(
            "RestoreInstance",
            json!({"InstanceId": id, "BackupId": backup_id, "Password": PASSWORD}),
        )
        .await;
    let task = r["TaskId"]
        .as_i64()
        .unwrap_or_else(|| panic!("TaskId: {r}"));
    let t = c.wait_task(task).await;
    assert_eq!(t["Status"], "succeed", "{t}");
    let mut conn = redis_conn(host, port, PASSWORD).await.unwrap();
    assert_eq!(get(&mut conn, "bk:1").await.as_deref(), Some("one"));
    assert_eq!(get(&mut conn, "bk:2").await.as_deref(), Some("two"));
    assert_eq!(get(&mut conn, "bk:3").await, None);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");

    // Afterwards the instance runs and the backup is unlocked.
    let r = c.ok("DescribeInstances", json!({"InstanceId": id})).await;
    assert_eq!(r["InstanceSet"][0]["Status"], 2, "{r}");
    let r = c
        .ok("DescribeInstanceBackups", json!({"InstanceId": id}))
        .await;
    assert_eq!(r["BackupSet"][0]["Locked"], 0, "{r}");
    assert_eq!(r["BackupSet"][0]["Status"], 2, "{r}");

    // A v2 ManualBackupInstance task, followed through 3.0 DescribeTaskInfo.
    let v = v2
        .ok(
            "ManualBackupInstance",
            &[("redisId", &id), ("remark", "v2 backup")],
        )
        .await;
    let v2_task = v["data"]["requestId"].as_i64().unwrap();
    let t = c.wait_task(v2_task).await;
    assert_eq!(t["Status"], "succeed", "{t}");
    assert_eq!(t["InstanceId"], id.as_str(), "{t}");
    let r = c
        .ok("DescribeInstanceBackups", json!({"InstanceId": id}))
        .await;
    assert_eq!(r["TotalCount"], 2, "{r}");
    assert!(
        r["BackupSet"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["Remark"] == "v2 backup" && b["BackupType"] == "0"),
        "{r}"
    );
    // The restore task made through 3.0 is visible to v2 DescribeTaskInfo too.
    let v = v2
        .ok("DescribeTaskInfo", &[("requestId", &task.to_string())])
        .await;
    assert_eq!(v["data"]["status"], 2, "{v}");
}

#[tokio::test]
async fn refusals_are_http_200_json_with_the_documented_codes() {
    let crsd = TestCrsd::start().await;
    let c = Tc3Client::new(&crsd);
    let params = json!({"Limit": 10});

    // Signed with another key.
    let mut r = c.post("DescribeInstances", &params);
    r.sign_key = Some(format!("{}x", c.secret_key));
    let v = c.send(r).await;
    assert_error(&v, "AuthFailure.SignatureFailure", "wrong key");

    // A body changed after signing.
    let mut r = c.post("DescribeInstances", &params);
    let auth = tc3_authorization(
        &c.secret_id,
        &c.secret_key,
        &Tc3Parts {
            method: "POST",
            host: &c.host,
            query: "",
            content_type: "application/json",
            payload: &r.body,
            timestamp: r.timestamp,
        },
    );
    r.authorization = Some(auth);
    r.body = br#"{"Limit": 11}"#.to_vec();
    let v = c.send(r).await;
    assert_error(&v, "AuthFailure.SignatureFailure", "body changed");

    // An unknown SecretId.
    let mut r = c.post("DescribeInstances", &params);
    r.secret_id = Some("AKIDnoSuchKey000000000000000000000000".into());
    let v = c.send(r).await;
    assert_error(&v, "AuthFailure.SecretIdNotFound", "unknown SecretId");

    // Malformed Authorization headers.
    for bad in [
        "TC3-HMAC-SHA256 garbage".to_string(),
        "HMAC-SHA1 Credential=x".to_string(),
        format!(
            "TC3-HMAC-SHA256 Credential={}/2020-01-01/redis/tc3_request, SignedHeaders=content-type;host",
            c.secret_id
        ),
        format!(
            "TC3-HMAC-SHA256 Credential={}/2020-01-01/redis/tc3_request, SignedHeaders=content-type;host, Signature=zz",
            c.secret_id
        ),
    ] {
        let mut r = c.post("DescribeInstances", &params);
        r.authorization = Some(bad.clone());
        let v = c.send(r).await;
        assert_error(&v, "AuthFailure.InvalidAuthorization", &bad);
    }

    // Ten minutes old, correctly signed for that time.
    let mut r = c.post("DescribeInstances", &params);
    r.timestamp -= 600;
    let v = c.send(r).await;
    assert_error(&v, "AuthFailure.SignatureExpire", "10 min old");
    // ... and ten minutes ahead.
    let mut r = c.post("DescribeInstances", &params);
    r.timestamp += 600;
    let v = c.send(r).await;
    assert_error(&v, "AuthFailure.SignatureExpire", "10 min ahead");

    // No X-TC-Action.
    let mut r = c.post("DescribeInstances", &params);
    r.action = None;
    let v = c.send(r).await;
    assert_error(&v, "MissingParameter", "no X-TC-Action");

    // Another version.
    let mut r = c.post("DescribeInstances", &params);
    r.version = "2017-03-12".into();
    let v = c.send(r).await;
    assert_error(&v, "InvalidParameterValue", "wrong X-TC-Version");

    // A model action not built yet, and a name outside the model.
    let v = c
        .err(
            "AllocateWanAddress",
            json!({"InstanceId": "crs-00000000"}),
            "UnsupportedOperation",
        )
        .await;
    assert!(
        v["Error"]["Message"]
            .as_str()
            .unwrap()
            .contains("AllocateWanAddress"),
        "{v}"
    );
    c.err("DescribeFooBar", json!({}), "InvalidAction").await;
    // ... also through GET and the old signature.
    let v = c.send(c.get("DescribeFooBar", "")).await;
    assert_error(&v, "InvalidAction", "GET unknown action");
    let v = c.send_old(&c.old_form("DescribeFooBar", &[])).await;
    assert_error(&v, "InvalidAction", "old signature unknown action");
    // The action is known before its body is read: a name outside the model is InvalidAction
    // whatever its body holds; a known action's body that is no JSON object is refused.
    let bad_body = |action: &str| Req {
        body: b"[1,2]".to_vec(),
        ..c.post(action, &json!({}))
    };
    let v = c.send(bad_body("DescribeFooBar")).await;
    assert_error(&v, "InvalidAction", "unknown action with a bad body");
    let v = c.send(bad_body("DescribeInstances")).await;
    assert_error(&v, "InvalidParameterValue", "known action with a bad body");

    // Unknown instance.
    let none = "crs-nosuch00";
    c.err(
        "ManualBackupInstance",
        json!({"InstanceId": none}),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;
    c.err(
        "DescribeInstanceBackups",
        json!({"InstanceId": none}),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;
    c.err(
        "RestoreInstance",
        json!({"InstanceId": none, "BackupId": "x", "Password": PASSWORD}),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;
    c.err(
        "DescribeBackupUrl",
        json!({"InstanceId": none, "BackupId": "x"}),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;

    // Missing required parameters.
    c.err("ManualBackupInstance", json!({}), "MissingParameter")
        .await;
    c.err("DescribeTaskInfo", json!({}), "MissingParameter")
        .await;
    // The service names the domain thing; API 3.0 names its own parameter.
    let v = c
        .err("DescribeInstanceDealDetail", json!({}), "MissingParameter")
        .await;
    assert_eq!(v["Error"]["Message"], "missing parameter: DealIds", "{v}");
    let v = c
        .err(
            "DescribeTaskList",
            json!({"BeginTime": "yesterday"}),
            "InvalidParameterValue",
        )
        .await;
    assert!(
        v["Error"]["Message"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter BeginTime:"),
        "{v}"
    );

    // The old signature: a second use of a Nonce is refused, and so is a stale Timestamp.
    let form = c.old_form("DescribeInstances", &[("Limit", "10")]);
    let v = c.send_old(&form).await;
    assert!(v.get("Error").is_none(), "{v}");
    let v = c.send_old(&form).await;
    assert_error(&v, "AuthFailure.InvalidAuthorization", "Nonce replayed");
    let mut form = c.old_form("DescribeInstances", &[("Limit", "10")]);
    for p in form.iter_mut() {
        if p.0 == "Timestamp" {
            p.1 = (c.now() - 600).to_string();
        }
    }
    let n = form.len();
    form[n - 1].1 = old_signature("POST", &c.host, &form, &c.secret_key);
    let v = c.send_old(&form).await;
    assert_error(
        &v,
        "AuthFailure.SignatureExpire",
        "old signature, 10 min old",
    );
}

/// Polls DescribeTaskInfo (3.0) until the task ends; returns its Status.
async fn wait_task3(c: &Tc3Client, task: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.ok("DescribeTaskInfo", json!({ "TaskId": task })).await;
        let s = r["Status"].as_str().unwrap().to_string();
        if s != "preparing" && s != "running" {
            return s;
        }
        assert!(Instant::now() < deadline, "task {task} did not end");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn modify_clear_renew_upgrade_and_task_list_over_tc3() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 2).await;
    let (a, b) = (v2_id(&made[0]), v2_id(&made[1]));

    // ModifyInstance rename pairs ids and names by index; v2 sees the names.
    c.ok(
        "ModifyInstance",
        json!({"Operation": "rename", "InstanceIds": [a, b], "InstanceNames": ["alpha", "beta"]}),
    )
    .await;
    assert_eq!(v2.describe_one(&a).await["redisName"], "alpha");
    assert_eq!(v2.describe_one(&b).await["redisName"], "beta");
    c.err(
        "ModifyInstance",
        json!({"Operation": "rename", "InstanceIds": [a, b], "InstanceNames": ["only-one"]}),
        "InvalidParameterValue",
    )
    .await;
    assert_eq!(v2.describe_one(&a).await["redisName"], "alpha", "unchanged");
    c.ok(
        "ModifyInstance",
        json!({"Operation": "modifyProject", "InstanceIds": [a], "ProjectId": 7}),
    )
    .await;
    assert_eq!(v2.describe_one(&a).await["projectId"], 7);
    c.ok(
        "ModifyInstance",
        json!({"Operation": "modifyAutoRenew", "InstanceIds": [a, b], "AutoRenews": [1, 2]}),
    )
    .await;
    assert_eq!(v2.describe_one(&a).await["autoRenewFlag"], 1);
    assert_eq!(v2.describe_one(&b).await["autoRenewFlag"], 2);
    // All or none: a bad flag or name for the second instance changes the first neither.
    c.err(
        "ModifyInstance",
        json!({"Operation": "modifyAutoRenew", "InstanceIds": [a, b], "AutoRenews": [2, 7]}),
        "InvalidParameterValue",
    )
    .await;
    assert_eq!(v2.describe_one(&a).await["autoRenewFlag"], 1, "unchanged");
    c.err(
        "ModifyInstance",
        json!({"Operation": "rename", "InstanceIds": [a, b], "InstanceNames": ["gamma", "bad name!"]}),
        "InvalidParameterValue.InstanceNameRuleError",
    )
    .await;
    assert_eq!(v2.describe_one(&a).await["redisName"], "alpha", "unchanged");
    c.err(
        "ModifyInstance",
        json!({"Operation": "modifyDeleteProtectionSwitch", "InstanceIds": [a]}),
        "InvalidParameterValue",
    )
    .await;

    // ClearInstance checks the password, then really flushes.
    let host = made[0]["wanIp"].as_str().unwrap();
    let port = made[0]["port"].as_u64().unwrap() as u16;
    let mut conn = redis_conn(host, port, PASSWORD).await.unwrap();
    set(&mut conn, "k", "v").await;
    c.err(
        "ClearInstance",
        json!({"InstanceId": a, "Password": "Wrong-pass1"}),
        "InvalidParameterValue.PasswordError",
    )
    .await;
    assert_eq!(get(&mut conn, "k").await.as_deref(), Some("v"));
    let r = c
        .ok(
            "ClearInstance",
            json!({"InstanceId": a, "Password": PASSWORD}),
        )
        .await;
    let clear_task = r["TaskId"].as_i64().unwrap();
    assert_eq!(wait_task3(&c, clear_task).await, "succeed");
    assert_eq!(get(&mut conn, "k").await, None);

    // RenewInstance and UpgradeInstance make deals v2 can look up.
    let deadline_before = v2.describe_one(&b).await["deadlineTime"].clone();
    let r = c
        .ok("RenewInstance", json!({"InstanceId": b, "Period": 1}))
        .await;
    let deal = r["DealId"].as_str().unwrap().to_string();
    let d3 = c
        .ok("DescribeInstanceDealDetail", json!({ "DealIds": [deal] }))
        .await;
    assert_eq!(d3["DealDetails"][0]["DealName"], r["DealName"], "{d3}");
    assert_eq!(d3["DealDetails"][0]["InstanceIds"], json!([b]), "{d3}");
    let d = v2
        .ok("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
        .await;
    assert_eq!(d["dealDetails"][0]["dealId"], deal, "{d}");
    assert_ne!(v2.describe_one(&b).await["deadlineTime"], deadline_before);
    c.err(
        "RenewInstance",
        json!({"InstanceId": b, "Period": 1000}),
        "InvalidParameterValue.Period",
    )
    .await;
    let r = c
        .ok("UpgradeInstance", json!({"InstanceId": b, "MemSize": 2048}))
        .await;
    assert!(r["DealName"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while v2.describe_one(&b).await["size"] != 2048 {
        assert!(Instant::now() < deadline, "upgrade did not land");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.err(
        "UpgradeInstance",
        json!({"InstanceId": b, "MemSize": 1024}),
        "InvalidParameterValue.ReduceCapacityNotAllowed",
    )
    .await;

    // DescribeTaskList: the clear task with the model's codes; filters by type and result.
    let r = c
        .ok(
            "DescribeTaskList",
            json!({"InstanceId": a, "TaskTypes": ["004"], "Limit": 10, "Offset": 0}),
        )
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    let t = &r["Tasks"][0];
    assert_eq!(t["TaskId"], clear_task, "{t}");
    assert_eq!(t["TaskType"], "004", "{t}");
    assert_eq!(t["Result"], 2, "{t}");
    assert_eq!(t["InstanceName"], "alpha", "{t}");
    assert_eq!(t["ProjectId"], 7, "{t}");
    let r = c
        .ok("DescribeTaskList", json!({"InstanceId": a, "Result": [4]}))
        .await;
    assert_eq!(r["TotalCount"], 0, "{r}");
    // Result 4 covers a task that ended in error (-1) as well as one that failed (3): the
    // filter matches what the list shows.
    {
        let svc = common::service(&crsd);
        let mut task = svc.store().task(clear_task).await.unwrap().expect("task");
        task.status = crsd_core::model::TaskStatus::Error;
        let mut tx = svc.store().write().await.unwrap();
        tx.update_task(&task).await.unwrap();
        tx.commit().await.unwrap();
    }
    let r = c
        .ok("DescribeTaskList", json!({"InstanceId": a, "Result": [4]}))
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    assert_eq!(r["Tasks"][0]["TaskId"], clear_task, "{r}");
    assert_eq!(r["Tasks"][0]["Result"], 4, "{r}");
    c.err(
        "DescribeTaskList",
        json!({"TaskTypes": ["999"]}),
        "InvalidParameterValue",
    )
    .await;
}

#[tokio::test]
async fn passwords_follow_the_api3_rule() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 1).await;
    let id = v2_id(&made[0]);
    let host = made[0]["wanIp"].as_str().unwrap().to_string();
    let port = made[0]["port"].as_u64().unwrap() as u16;
    // 20 characters with `$`: too long and an unknown special for v2, fine for 3.0.
    let long = "Abcdefghijklmnop$123";
    v2.err(
        "ResetRedisPassword",
        &[("redisId", &id), ("password", long)],
        4000,
        Some(11058),
    )
    .await;

    for (old, new, code) in [
        ("Wrong-pass1", long, "InvalidParameterValue.PasswordError"),
        (
            PASSWORD,
            "/Abcdefg123",
            "InvalidParameterValue.PasswordRuleError",
        ),
        (
            PASSWORD,
            "abcdefghijk",
            "InvalidParameterValue.PasswordRuleError",
        ),
        (PASSWORD, "", "InvalidParameterValue.PasswordEmpty"),
    ] {
        c.err(
            "ModifyInstancePassword",
            json!({"InstanceId": id, "OldPassword": old, "Password": new}),
            code,
        )
        .await;
    }
    assert!(redis_conn(&host, port, PASSWORD).await.is_ok(), "unchanged");

    let r = c
        .ok(
            "ModifyInstancePassword",
            json!({"InstanceId": id, "OldPassword": PASSWORD, "Password": long}),
        )
        .await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    assert!(
        redis_conn(&host, port, long).await.is_ok(),
        "new password works"
    );
    assert!(
        redis_conn(&host, port, PASSWORD).await.is_err(),
        "old one fails"
    );

    // The misspelled twin of the model, and ResetPassword without the old one.
    let r = c
        .ok(
            "ModfiyInstancePassword",
            json!({"InstanceId": id, "OldPassword": long, "Password": "Second-pass-2"}),
        )
        .await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    let r = c
        .ok(
            "ResetPassword",
            json!({"InstanceId": id, "Password": PASSWORD}),
        )
        .await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    assert!(redis_conn(&host, port, PASSWORD).await.is_ok());
    c.err(
        "ResetPassword",
        json!({"InstanceId": id, "NoAuth": true}),
        "InvalidParameterValue",
    )
    .await;
}

#[tokio::test]
async fn create_instances_with_product_info_and_price_and_v2_sees_them() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);

    let r = c.ok("DescribeProductInfo", json!({})).await;
    let zones: Vec<&Value> = r["RegionSet"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|reg| reg["ZoneSet"].as_array().unwrap())
        .collect();
    let gz = zones
        .iter()
        .find(|z| z["OldZoneId"] == 100002)
        .unwrap_or_else(|| panic!("zone 100002: {r}"));
    assert_eq!(gz["ProductSet"][0]["Type"], 17, "{gz}");
    assert_eq!(gz["ProductSet"][0]["Version"], "Redis-7.0", "{gz}");

    let r = c
        .ok(
            "InquiryPriceCreateInstance",
            json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 2, "BillingMode": 1, "ZoneId": 100002}),
        )
        .await;
    assert_eq!(r["Price"], 16000.0, "the seed's 1024 MB x 2 months: {r}");
    assert_eq!(r["AmountUnit"], "pent");

    let base = json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 2, "Period": 1,
        "BillingMode": 1, "ZoneId": 100002, "Password": "Api3-Password-Long-2024", "AutoRenew": 1,
        "RedisShardNum": 1, "RedisReplicasNum": 1});
    for (field, value) in [
        ("TypeId", json!(8)),
        ("BillingMode", json!(2)),
        // Password-less instances: not in the default config.
        ("NoAuth", json!(true)),
        // Refused before anything is bought (not after: a retry would buy again).
        ("AutoRenew", json!(3)),
        // 1-5 replicas are sold; a standard instance is one shard.
        ("RedisReplicasNum", json!(0)),
        ("RedisReplicasNum", json!(6)),
        ("RedisShardNum", json!(3)),
    ] {
        let mut bad = base.clone();
        bad[field] = value;
        c.err("CreateInstances", bad, "InvalidParameterValue").await;
    }
    let mut bad = base.clone();
    bad["Password"] = json!("/starts-with-slash1");
    c.err(
        "CreateInstances",
        bad,
        "InvalidParameterValue.PasswordRuleError",
    )
    .await;
    assert_eq!(
        v2.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
            .await["totalCount"],
        0,
        "refusals create nothing"
    );

    let r = c.ok("CreateInstances", base).await;
    let ids: Vec<String> = r["InstanceIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{r}");
    let deal = r["DealId"].as_str().unwrap().to_string();
    assert_eq!(v2.wait_deal(&deal).await.len(), 2);
    let d3 = c
        .ok("DescribeInstanceDealDetail", json!({ "DealIds": [deal] }))
        .await;
    let detail = &d3["DealDetails"][0];
    assert_eq!(detail["DealName"], r["DealName"], "{d3}");
    assert_eq!(detail["Status"], 4, "delivered: {d3}");
    assert_eq!(detail["GoodsNum"], 2, "{d3}");
    let r = c
        .ok(
            "InquiryPriceRenewInstance",
            json!({"InstanceId": ids[0], "Period": 2}),
        )
        .await;
    assert_eq!(r["Price"], 16000.0, "{r}");
    let r = c
        .ok(
            "InquiryPriceUpgradeInstance",
            json!({"InstanceId": ids[0], "MemSize": 2048}),
        )
        .await;
    assert!(r["Price"].as_f64().is_some_and(|p| p > 0.0), "{r}");
    c.err(
        "DescribeInstanceDealDetail",
        json!({ "DealIds": ["999999999"] }),
        "ResourceNotFound",
    )
    .await;
    for id in &ids {
        let one = c.ok("DescribeInstances", json!({"InstanceId": id})).await;
        let inst = &one["InstanceSet"][0];
        assert_eq!(inst["Status"], 2, "{inst}");
        assert_eq!(inst["Type"], 17, "{inst}");
        assert_eq!(inst["AutoRenewFlag"], 1, "{inst}");
        let v = v2.describe_one(id).await;
        assert_eq!(v["typeId"], 2, "v2 sees the master-replica product: {v}");
        let host = inst["WanIp"].as_str().unwrap();
        let port = inst["Port"].as_u64().unwrap() as u16;
        let mut conn = redis_conn(host, port, "Api3-Password-Long-2024")
            .await
            .expect("the 3.0 password works");
        set(&mut conn, "hello", "world").await;
        assert_eq!(get(&mut conn, "hello").await.as_deref(), Some("world"));
    }
}

/// Polls DescribeInstances until the instance's Status is `want` (or it is gone, for None).
async fn wait_status(c: &Tc3Client, id: &str, want: Option<i64>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.ok("DescribeInstances", json!({ "InstanceId": id })).await;
        let got = r["InstanceSet"][0]["Status"].as_i64();
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{id}: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn destroy_prepaid_startup_and_clean_up() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 1).await;
    let id = v2_id(&made[0]);
    let host = made[0]["wanIp"].as_str().unwrap().to_string();
    let port = made[0]["port"].as_u64().unwrap() as u16;
    let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
    set(&mut conn, "kept", "yes").await;

    for action in ["StartupInstance", "CleanUpInstance"] {
        c.err(
            action,
            json!({ "InstanceId": id }),
            "ResourceUnavailable.InstanceStatusAbnormal",
        )
        .await;
    }

    let r = c
        .ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    assert!(r["DealName"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    wait_status(&c, &id, Some(-2)).await;
    assert!(redis_conn(&host, port, PASSWORD).await.is_err(), "stopped");

    let r = c.ok("StartupInstance", json!({ "InstanceId": id })).await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    wait_status(&c, &id, Some(2)).await;
    let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
    assert_eq!(
        get(&mut conn, "kept").await.as_deref(),
        Some("yes"),
        "data kept"
    );

    c.ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    wait_status(&c, &id, Some(-2)).await;
    let dir = crsd.data_dir().join("instances").join(&id);
    assert!(dir.exists());
    let r = c.ok("CleanUpInstance", json!({ "InstanceId": id })).await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    wait_status(&c, &id, None).await;
    assert!(!dir.exists(), "instance files removed");
    c.err(
        "StartupInstance",
        json!({ "InstanceId": id }),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;
}

/// `NoAuth` is honoured only where the operator's config allows password-less instances:
/// refused by default (see `passwords_follow_the_api3_rule`); allowed, the instance's default
/// user needs no password, every call that checks the password accepts none, and a password
/// can be set and taken away again.
#[tokio::test]
async fn no_auth_instances_only_where_the_operator_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.instances.allow_no_auth = true;
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let r = c
        .ok(
            "CreateInstances",
            json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1, "BillingMode": 1,
                "ZoneId": 100002, "NoAuth": true}),
        )
        .await;
    let id = r["InstanceIds"][0].as_str().unwrap().to_string();
    v2.wait_deal(r["DealId"].as_str().unwrap()).await;
    let inst = c.ok("DescribeInstances", json!({"InstanceId": id})).await["InstanceSet"][0].clone();
    assert_eq!(inst["NoAuth"], true, "{inst}");
    let host = inst["WanIp"].as_str().unwrap().to_string();
    let port = inst["Port"].as_u64().unwrap() as u16;
    let open = |p: &'static str| {
        let host = host.clone();
        async move {
            redis::Client::open(format!("redis://{}@{host}:{port}/", p))
                .unwrap()
                .get_multiplexed_async_connection()
                .await
        }
    };
    let mut conn = open("").await.expect("no password needed");
    set(&mut conn, "k", "v").await;
    // The password-checking calls accept none.
    let r = c.ok("ClearInstance", json!({"InstanceId": id})).await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    assert_eq!(
        get(&mut open("").await.unwrap(), "k").await,
        None,
        "flushed"
    );

    // A password set on it is required from then on...
    let r = c
        .ok(
            "ResetPassword",
            json!({"InstanceId": id, "Password": "Api3-Password-Long-2024"}),
        )
        .await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    let inst = c.ok("DescribeInstances", json!({"InstanceId": id})).await["InstanceSet"][0].clone();
    assert_eq!(inst["NoAuth"], false, "{inst}");
    let mut anon = open("").await.unwrap();
    let denied: redis::RedisResult<Option<String>> =
        redis::cmd("GET").arg("k").query_async(&mut anon).await;
    assert!(denied.is_err(), "NOAUTH once a password is set");
    assert!(redis_conn(&host, port, "Api3-Password-Long-2024")
        .await
        .is_ok());
    c.err(
        "ClearInstance",
        json!({"InstanceId": id}),
        "InvalidParameterValue.PasswordEmpty",
    )
    .await;
    // ...and ResetPassword with NoAuth takes it away again, on master and replica.
    let r = c
        .ok("ResetPassword", json!({"InstanceId": id, "NoAuth": true}))
        .await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    let mut conn = open("").await.unwrap();
    set(&mut conn, "again", "1").await;
    let replica = common::service(&crsd)
        .store()
        .instance(&id)
        .await
        .unwrap()
        .unwrap()
        .replicas()
        .next()
        .expect("a replica")
        .port;
    let mut conn = redis::Client::open(format!("redis://{host}:{replica}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG", "the replica needs no password either");
}

/// Sets an account's balance directly (what an operator's top-up would do).
async fn set_balance(crsd: &TestCrsd, app_id: i64, cents: i64) {
    let svc = common::service(crsd);
    let mut tx = svc.store().write().await.unwrap();
    tx.set_balance(app_id, cents).await.unwrap();
    tx.commit().await.unwrap();
}

#[tokio::test]
async fn postpaid_is_charged_by_the_hour_and_destroyed_with_destroy_postpaid() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let svc = common::service(&crsd);
    let app = common::main_app_id(&crsd);
    let password = "Api3-Password-Long-2024";
    // 8000 cents a GB-month over 720 hours, rounded up: 12 cents an hour for 1 GB.
    let hour = 12;

    let r = c
        .ok(
            "InquiryPriceCreateInstance",
            json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 2, "BillingMode": 0, "ZoneId": 100002}),
        )
        .await;
    assert_eq!(r["Price"], (2 * hour) as f64, "an hour of two: {r}");

    let before = common::balance(&crsd, app).await;
    let order = json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "BillingMode": 0,
        "ZoneId": 100002, "Password": password});
    let r = c.ok("CreateInstances", order.clone()).await;
    let id = r["InstanceIds"][0].as_str().unwrap().to_string();
    v2.wait_deal(r["DealId"].as_str().unwrap()).await;
    assert_eq!(
        common::balance(&crsd, app).await,
        before - hour,
        "the first hour"
    );
    let inst = c.ok("DescribeInstances", json!({"InstanceId": id})).await["InstanceSet"][0].clone();
    assert_eq!(inst["BillingMode"], 0, "{inst}");
    assert_eq!(inst["DeadlineTime"], "0000-00-00 00:00:00", "{inst}");
    assert_eq!(
        v2.describe_one(&id).await["deadlineTime"],
        "0000-00-00 00:00:00"
    );
    let host = inst["WanIp"].as_str().unwrap().to_string();
    let port = inst["Port"].as_u64().unwrap() as u16;
    set(
        &mut redis_conn(&host, port, password).await.unwrap(),
        "kept",
        "yes",
    )
    .await;

    // The prepaid-only actions refuse it, and change nothing.
    c.err(
        "DestroyPrepaidInstance",
        json!({"InstanceId": id}),
        "InvalidParameterValue",
    )
    .await;
    c.err(
        "RenewInstance",
        json!({"InstanceId": id, "Period": 1}),
        "InvalidParameterValue",
    )
    .await;
    assert_eq!(common::balance(&crsd, app).await, before - hour);
    wait_status(&c, &id, Some(2)).await;

    // 2.5 hours after creation: the hours [1h, 2h) and [2h, 3h) are charged, once.
    crsd.clock.advance(chrono::Duration::minutes(150));
    assert_eq!(svc.expire_once().await.unwrap(), (1, 0));
    assert_eq!(common::balance(&crsd, app).await, before - 3 * hour);
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0), "nothing owed yet");
    assert_eq!(common::balance(&crsd, app).await, before - 3 * hour);

    // An hour the balance cannot pay stops it; nothing is charged.
    set_balance(&crsd, app, hour - 1).await;
    crsd.clock.advance(chrono::Duration::minutes(31));
    assert_eq!(svc.expire_once().await.unwrap(), (0, 1));
    wait_status(&c, &id, Some(-2)).await;
    assert_eq!(common::balance(&crsd, app).await, hour - 1);
    assert!(redis_conn(&host, port, password).await.is_err(), "stopped");
    assert_eq!(
        svc.expire_once().await.unwrap(),
        (0, 0),
        "an isolated one is not charged"
    );
    c.err(
        "StartupInstance",
        json!({"InstanceId": id}),
        "UnauthorizedOperation.NotEnoughAmount",
    )
    .await;
    // Topped up, it starts again (its first hour charged) with its data.
    set_balance(&crsd, app, 1000).await;
    let r = c.ok("StartupInstance", json!({"InstanceId": id})).await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    assert_eq!(common::balance(&crsd, app).await, 1000 - hour);
    let mut conn = redis_conn(&host, port, password).await.unwrap();
    assert_eq!(get(&mut conn, "kept").await.as_deref(), Some("yes"));

    // DestroyPostpaidInstance isolates it; started again within the paid hour it costs
    // nothing more; CleanUpInstance removes it.
    for action in [
        "DestroyPostpaidInstance",
        "StartupInstance",
        "DestroyPostpaidInstance",
    ] {
        let r = c.ok(action, json!({"InstanceId": id})).await;
        assert_eq!(
            wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
            "succeed"
        );
        assert_eq!(
            common::balance(&crsd, app).await,
            1000 - hour,
            "{action}: paid"
        );
    }
    wait_status(&c, &id, Some(-2)).await;
    let r = c.ok("CleanUpInstance", json!({"InstanceId": id})).await;
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    wait_status(&c, &id, None).await;

    // A prepaid instance refuses DestroyPostpaidInstance; a postpaid one becomes prepaid
    // with RenewInstance's ModifyPayMode=prepaid.
    set_balance(&crsd, app, 100_000).await;
    let r = c.ok("CreateInstances", order).await;
    let id = r["InstanceIds"][0].as_str().unwrap().to_string();
    v2.wait_deal(r["DealId"].as_str().unwrap()).await;
    let r = c
        .ok(
            "RenewInstance",
            json!({"InstanceId": id, "Period": 1, "ModifyPayMode": "prepaid"}),
        )
        .await;
    assert!(r["DealId"].as_str().is_some(), "{r}");
    assert_eq!(common::balance(&crsd, app).await, 100_000 - hour - 8000);
    let inst = c.ok("DescribeInstances", json!({"InstanceId": id})).await["InstanceSet"][0].clone();
    assert_eq!(inst["BillingMode"], 1, "{inst}");
    assert_ne!(inst["DeadlineTime"], "0000-00-00 00:00:00", "{inst}");
    c.err(
        "DestroyPostpaidInstance",
        json!({"InstanceId": id}),
        "InvalidParameterValue",
    )
    .await;
    // Prepaid now: the hourly pass leaves it alone.
    crsd.clock.advance(chrono::Duration::hours(5));
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0));
}

#[tokio::test]
async fn auto_backup_config_drives_the_daily_backups() {
    use chrono::{Datelike, TimeZone};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.backups.daily_at = "03:00".into();
    cfg.time_zone = "Asia/Shanghai".into();
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let tz: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 2).await;
    let (a, b) = (v2_id(&made[0]), v2_id(&made[1]));
    let svc = common::service(&crsd);

    // Defaults: every day, in the operator's 03:00 hour.
    let r = c
        .ok("DescribeAutoBackupConfig", json!({ "InstanceId": a }))
        .await;
    assert_eq!(r["TimePeriod"], "03:00-04:00", "{r}");
    assert_eq!(r["WeekDays"].as_array().unwrap().len(), 7, "{r}");
    assert_eq!(r["BackupStorageDays"], 7);

    // `a`: only on the day after tomorrow's week day, at 05:00.
    let tomorrow = svc.now().with_timezone(&tz).date_naive() + chrono::Days::new(1);
    let day_after = tomorrow + chrono::Days::new(1);
    let name = |d: chrono::NaiveDate| match d.weekday() {
        chrono::Weekday::Mon => "Monday",
        chrono::Weekday::Tue => "Tuesday",
        chrono::Weekday::Wed => "Wednesday",
        chrono::Weekday::Thu => "Thursday",
        chrono::Weekday::Fri => "Friday",
        chrono::Weekday::Sat => "Saturday",
        chrono::Weekday::Sun => "Sunday",
    };
    for (bad, code) in [
        (
            json!({"InstanceId": a, "TimePeriod": "05:30-06:30"}),
            "InvalidParameterValue",
        ),
        (
            json!({"InstanceId": a, "WeekDays": ["Funday"]}),
            "InvalidParameterValue",
        ),
        (
            json!({"InstanceId": a, "BackupStorageDays": 30}),
            "InvalidParameterValue",
        ),
    ] {
        c.err("ModifyAutoBackupConfig", bad, code).await;
    }
    let r = c
        .ok(
            "ModifyAutoBackupConfig",
            json!({"InstanceId": a, "WeekDays": [name(day_after)], "TimePeriod": "05:00-06:00", "AutoBackupType": 1}),
        )
        .await;
    assert_eq!(r["TimePeriod"], "05:00-06:00", "{r}");
    assert_eq!(r["WeekDays"], json!([name(day_after)]), "{r}");
    let r = c
        .ok("DescribeAutoBackupConfig", json!({ "InstanceId": a }))
        .await;
    assert_eq!(r["TimePeriod"], "05:00-06:00", "kept: {r}");

    let at = |d: chrono::NaiveDate, h: u32, m: u32| {
        tz.from_local_datetime(&d.and_hms_opt(h, m, 0).unwrap())
            .unwrap()
            .with_timezone(&chrono::Utc)
    };
    let backed_up = |r: &Value| r["TotalCount"].as_i64().unwrap();
    // A backup task holds its instance until it ends: wait for `n` backups of `id`.
    let wait_backups = |id: String, n: i64| {
        let c = &c;
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let r = c
                    .ok("DescribeInstanceBackups", json!({ "InstanceId": id }))
                    .await;
                if r["TotalCount"] == n {
                    return;
                }
                assert!(Instant::now() < deadline, "{id}: {r}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Tomorrow 03:01: only `b` (every day, 03:00).
    crsd.clock.advance(at(tomorrow, 3, 1) - svc.now());
    assert_eq!(svc.daily_backups_once().await.unwrap(), 1, "tomorrow 03:01");
    wait_backups(b.clone(), 1).await;
    // Tomorrow 05:01: not `a`'s day.
    crsd.clock.advance(at(tomorrow, 5, 1) - svc.now());
    assert_eq!(svc.daily_backups_once().await.unwrap(), 0, "tomorrow 05:01");
    // The day after, 03:01: `b` again; 04:59: still not `a`; 05:01: `a`.
    crsd.clock.advance(at(day_after, 3, 1) - svc.now());
    assert_eq!(
        svc.daily_backups_once().await.unwrap(),
        1,
        "day after 03:01"
    );
    crsd.clock.advance(at(day_after, 4, 59) - svc.now());
    assert_eq!(
        svc.daily_backups_once().await.unwrap(),
        0,
        "day after 04:59"
    );
    crsd.clock.advance(at(day_after, 5, 1) - svc.now());
    assert_eq!(
        svc.daily_backups_once().await.unwrap(),
        1,
        "day after 05:01"
    );
    assert_eq!(svc.daily_backups_once().await.unwrap(), 0, "once a day");
    // Let the tasks finish, then count system backups per instance.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ra = c
            .ok("DescribeInstanceBackups", json!({ "InstanceId": a }))
            .await;
        let rb = c
            .ok("DescribeInstanceBackups", json!({ "InstanceId": b }))
            .await;
        if backed_up(&ra) == 1 && backed_up(&rb) == 2 {
            assert_eq!(ra["BackupSet"][0]["BackupType"], "1", "{ra}");
            break;
        }
        assert!(Instant::now() < deadline, "a: {ra}\nb: {rb}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn slow_log_and_node_info() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 1).await;
    let id = v2_id(&made[0]);
    let host = made[0]["wanIp"].as_str().unwrap();
    let port = made[0]["port"].as_u64().unwrap() as u16;

    let r = c.ok("DescribeSlowLog", json!({ "InstanceId": id })).await;
    assert_eq!(r["TotalCount"], 0, "a fresh instance: {r}");

    // A script busy for well over redis's 10 ms slow-log threshold.
    let mut conn = redis_conn(host, port, PASSWORD).await.unwrap();
    let _: i64 = redis::cmd("EVAL")
        .arg("local i = 0 while i < 5000000 do i = i + 1 end return i")
        .arg(0)
        .query_async(&mut conn)
        .await
        .unwrap();
    let r = c
        .ok("DescribeSlowLog", json!({ "InstanceId": id, "Limit": 10 }))
        .await;
    assert!(r["TotalCount"].as_i64().unwrap() >= 1, "{r}");
    let e = r["InstanceSlowlogDetail"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["Command"]
                .as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case("eval"))
        })
        .unwrap_or_else(|| panic!("the EVAL: {r}"));
    assert!(e["Duration"].as_i64().unwrap() >= 10, "{e}");
    assert!(
        e["CommandLine"].as_str().unwrap().contains("5000000"),
        "{e}"
    );
    assert_eq!(e["Node"], "master");
    assert_eq!(e["Client"], "127.0.0.1", "{e}");
    let r = c
        .ok(
            "DescribeSlowLog",
            json!({ "InstanceId": id, "MinQueryTime": 3_600_000 }),
        )
        .await;
    assert_eq!(r["TotalCount"], 0, "nothing took an hour: {r}");
    c.err(
        "DescribeSlowLog",
        json!({ "InstanceId": id, "Role": "boss" }),
        "InvalidParameterValue",
    )
    .await;

    let r = c
        .ok("DescribeInstanceNodeInfo", json!({ "InstanceId": id }))
        .await;
    assert_eq!(r["RedisCount"], 2, "{r}");
    let roles: Vec<&str> = r["Redis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["NodeRole"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["master", "slave"], "{r}");
    let node_ids: Vec<String> = r["Redis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["NodeId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(node_ids, [format!("{id}-0"), format!("{id}-1")], "{r}");
    c.err(
        "DescribeInstanceNodeInfo",
        json!({ "InstanceId": "crs-00000000" }),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;

    // Replica groups: one per node, each with its node as it answers now.
    let _: () = redis::cmd("SET")
        .arg("zone-info-key")
        .arg("v")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let keys: i64 = redis::cmd("DBSIZE").query_async(&mut conn).await.unwrap();
    let r = c
        .ok("DescribeInstanceZoneInfo", json!({ "InstanceId": id }))
        .await;
    assert_eq!(r["TotalCount"], 2, "{r}");
    let groups = r["ReplicaGroups"].as_array().unwrap();
    for (group, (role, node)) in groups
        .iter()
        .zip([("master", &node_ids[0]), ("replica", &node_ids[1])])
    {
        assert_eq!(group["Role"], role, "{r}");
        assert!(group["GroupId"].is_i64(), "{r}");
        assert!(group["GroupName"].is_string(), "{r}");
        assert!(group["ZoneId"].is_string(), "{r}");
        let n = &group["RedisNodes"][0];
        assert_eq!(n["NodeId"], node.as_str(), "{r}");
        assert_eq!(n["Role"], role, "{r}");
        assert_eq!(n["Keys"], keys, "every node holds the keys: {r}");
        assert_eq!(n["Slot"], "0-16383", "{r}");
        assert_eq!(n["Status"], "online", "{r}");
    }
    assert_eq!(
        groups[0]["GroupName"], "",
        "the master's group has no name: {r}"
    );

    // A node that does not answer (stopped by SIGSTOP: alive, so the supervisor leaves it)
    // is offline, and the ids stay what they were.
    let svc = common::service(&crsd);
    let inst = svc.store().instance(&id).await.unwrap().unwrap();
    let replica = svc.replica_specs(&inst).remove(0);
    let pid = common::engine(&crsd)
        .running_pid(&replica)
        .expect("the replica runs");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let r = c
        .ok("DescribeInstanceZoneInfo", json!({ "InstanceId": id }))
        .await;
    signal("-CONT");
    assert_eq!(
        r["ReplicaGroups"][1]["RedisNodes"][0]["Status"], "offline",
        "{r}"
    );
    assert_eq!(
        r["ReplicaGroups"][1]["RedisNodes"][0]["NodeId"],
        node_ids[1].as_str(),
        "{r}"
    );
    assert_eq!(
        r["ReplicaGroups"][0]["RedisNodes"][0]["Status"], "online",
        "{r}"
    );
    c.err(
        "DescribeInstanceZoneInfo",
        json!({ "InstanceId": "crs-00000000" }),
        "ResourceNotFound.InstanceNotExists",
    )
    .await;
}

/// `CONFIG GET name` on a node, as crsd's admin user.
async fn config_get(crsd: &TestCrsd, id: &str, replica: bool, name: &str) -> String {
    let svc = common::service(crsd);
    let inst = svc.store().instance(id).await.unwrap().unwrap();
    let (master, replica_spec) = common::master_and_replica(&svc, &inst);
    let spec = if replica { replica_spec } else { master };
    svc.runtime().get_param(&spec, name).await.unwrap()
}

#[tokio::test]
async fn instance_params_change_live_and_stay() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let made = create(&v2, 1).await;
    let id = v2_id(&made[0]);

    let r = c
        .ok("DescribeInstanceParams", json!({ "InstanceId": id }))
        .await;
    let policy = r["InstanceEnumParam"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ParamName"] == "maxmemory-policy")
        .unwrap_or_else(|| panic!("{r}"));
    assert_eq!(policy["CurrentValue"], "noeviction", "{policy}");
    assert!(r["InstanceIntegerParam"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["ParamName"] == "timeout"));

    // Refusals change nothing: not on the allow-list, out of range, wrong enum value.
    for (key, value) in [
        ("appendonly", "no"),
        ("timeout", "99999"),
        ("maxmemory-policy", "all"),
    ] {
        c.err(
            "ModifyInstanceParams",
            json!({"InstanceId": id, "InstanceParams": [{"Key": key, "Value": value}]}),
            "InvalidParameterValue",
        )
        .await;
    }
    assert_eq!(config_get(&crsd, &id, false, "appendonly").await, "yes");
    assert_eq!(config_get(&crsd, &id, false, "timeout").await, "0");

    let r = c
        .ok(
            "ModifyInstanceParams",
            json!({"InstanceId": id, "InstanceParams": [
                {"Key": "maxmemory-policy", "Value": "allkeys-lru"},
                {"Key": "timeout", "Value": "300"}]}),
        )
        .await;
    assert_eq!(r["Changed"], true, "{r}");
    assert_eq!(
        wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    for replica in [false, true] {
        assert_eq!(
            config_get(&crsd, &id, replica, "maxmemory-policy").await,
            "allkeys-lru"
        );
        assert_eq!(config_get(&crsd, &id, replica, "timeout").await, "300");
    }
    let r = c
        .ok(
            "ModifyInstanceParams",
            json!({"InstanceId": id, "InstanceParams": [{"Key": "timeout", "Value": "300"}]}),
        )
        .await;
    assert_eq!(r["Changed"], false, "same value: {r}");
    let r = c
        .ok(
            "DescribeTaskList",
            json!({"InstanceId": id, "TaskTypes": ["034"]}),
        )
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");

    // Kept across a spec change (the upgrade re-renders redis.conf at the next start) and a
    // kill -9 of the master, which the supervisor brings back.
    let r = c
        .ok(
            "UpgradeInstance",
            json!({"InstanceId": id, "MemSize": 2048}),
        )
        .await;
    assert!(r["DealName"].is_string());
    let deadline = Instant::now() + Duration::from_secs(60);
    while v2.describe_one(&id).await["size"] != 2048 || v2.describe_one(&id).await["status"] != 2 {
        assert!(Instant::now() < deadline, "upgrade did not land");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let svc = common::service(&crsd);
    let inst = svc.store().instance(&id).await.unwrap().unwrap();
    let master = svc.master_spec(&inst).unwrap();
    let engine = common::engine(&crsd);
    let pid = engine.running_pid(&master).expect("the master runs") as i32;
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(v) = svc.runtime().get_param(&master, "maxmemory-policy").await {
            let new_pid = engine.running_pid(&master).unwrap_or(0) as i32;
            if new_pid != pid && new_pid != 0 {
                assert_eq!(v, "allkeys-lru", "kept after restart");
                break;
            }
        }
        assert!(Instant::now() < deadline, "master did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(config_get(&crsd, &id, false, "timeout").await, "300");
    assert_eq!(
        config_get(&crsd, &id, false, "maxmemory").await,
        (2048u64 * 1024 * 1024).to_string()
    );
}

#[tokio::test]
async fn describe_instance_backups_filters_by_status_with_the_models_default() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let id = v2_id(&create(&v2, 1).await[0]);
    for _ in 0..2 {
        let r = c
            .ok("ManualBackupInstance", json!({ "InstanceId": id }))
            .await;
        assert_eq!(
            wait_task3(&c, r["TaskId"].as_i64().unwrap()).await,
            "succeed"
        );
    }
    let count = |r: &Value| r["TotalCount"].as_i64().unwrap();
    let r = c
        .ok(
            "DescribeInstanceBackups",
            json!({ "InstanceId": id, "Limit": 1 }),
        )
        .await;
    assert_eq!(
        (count(&r), r["BackupSet"].as_array().unwrap().len()),
        (2, 1),
        "{r}"
    );

    // Expired by retention: gone from the default ([2]) listing, there with Status [-1].
    crsd.clock.advance(chrono::Duration::days(8));
    assert_eq!(
        common::service(&crsd).expire_backups_once().await.unwrap(),
        2
    );
    let r = c
        .ok("DescribeInstanceBackups", json!({ "InstanceId": id }))
        .await;
    assert_eq!(count(&r), 0, "{r}");
    let r = c
        .ok(
            "DescribeInstanceBackups",
            json!({ "InstanceId": id, "Status": [-1], "Limit": 1, "Offset": 1 }),
        )
        .await;
    assert_eq!(count(&r), 2, "{r}");
    assert_eq!(r["BackupSet"].as_array().unwrap().len(), 1, "{r}");
    assert_eq!(r["BackupSet"][0]["Status"], -1, "{r}");
    c.err(
        "DescribeInstanceBackups",
        json!({ "InstanceId": id, "Limit": 101 }),
        "InvalidParameterValue",
    )
    .await;
}

/// The SDKs sign only `content-type;host`: the action (X-TC-Action) is not covered, and TC3
/// has no nonce. A change is accepted only with a signature never used within the window,
/// before and after a restart, so a captured request can neither change something twice nor
/// be redirected to a change; a read may repeat.
#[tokio::test]
async fn a_tc3_signature_is_accepted_once_even_across_a_restart() {
    let mut crsd = TestCrsd::start_restartable().await;
    let c = Tc3Client::new(&crsd);
    let v2 = crsd.client();
    let app = common::main_app_id(&crsd);
    let order = json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "BillingMode": 0,
        "ZoneId": 100002, "Password": PASSWORD});
    let before = common::balance(&crsd, app).await;

    // One signed CreateInstances, sent three times: one instance, one charge.
    let create = c.post("CreateInstances", &order);
    let auth = c.authorization(&create);
    let signed = |action: &str, r: &Req| Req {
        action: Some(action.to_string()),
        authorization: Some(auth.clone()),
        method: r.method,
        version: r.version.clone(),
        timestamp: r.timestamp,
        query: r.query.clone(),
        body: r.body.clone(),
        content_type: r.content_type,
        sign_key: None,
        secret_id: None,
        host: None,
    };
    let r = c.send(signed("CreateInstances", &create)).await;
    let id = r["InstanceIds"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    v2.wait_deal(r["DealId"].as_str().unwrap()).await;
    let charged = common::balance(&crsd, app).await;
    assert!(charged < before, "the first hour is charged");
    for _ in 0..2 {
        let again = c.send(signed("CreateInstances", &create)).await;
        assert_error(
            &again,
            "AuthFailure.InvalidAuthorization",
            "replayed CreateInstances",
        );
        let msg = again["Error"]["Message"].as_str().unwrap();
        assert!(
            msg.contains("replay"),
            "the error says it was a replay: {msg}"
        );
    }
    // The same signature with its hex upper-cased is the same signature.
    let upper = {
        let (head, sig) = auth.rsplit_once("Signature=").unwrap();
        format!("{head}Signature={}", sig.to_ascii_uppercase())
    };
    let r = c
        .send(Req {
            authorization: Some(upper),
            ..signed("CreateInstances", &create)
        })
        .await;
    assert_error(
        &r,
        "AuthFailure.InvalidAuthorization",
        "upper-cased signature",
    );

    // A captured read sent to another action: refused, the instance keeps running.
    let describe = c.post("DescribeInstances", &json!({ "InstanceId": id }));
    let auth_d = c.authorization(&describe);
    let with = |action: &str| Req {
        action: Some(action.to_string()),
        authorization: Some(auth_d.clone()),
        ..c.post("DescribeInstances", &json!({ "InstanceId": id }))
    };
    let redirected = || Req {
        timestamp: describe.timestamp,
        ..with("DestroyPostpaidInstance")
    };
    for _ in 0..2 {
        // The identical read, twice (as a poll loop sends it within a second): answered.
        let mut first = with("DescribeInstances");
        first.timestamp = describe.timestamp;
        let r = c.send(first).await;
        assert_eq!(r["InstanceSet"][0]["Status"], 2, "{r}");
    }
    let r = c.send(redirected()).await;
    assert_error(
        &r,
        "AuthFailure.InvalidAuthorization",
        "redirected to Destroy",
    );

    // After a restart, the journal still knows both signatures.
    crsd.restart().await;
    let r = c.send(signed("CreateInstances", &create)).await;
    assert_error(
        &r,
        "AuthFailure.InvalidAuthorization",
        "replay after a restart",
    );
    let r = c.send(redirected()).await;
    assert_error(
        &r,
        "AuthFailure.InvalidAuthorization",
        "redirect after a restart",
    );

    assert_eq!(common::balance(&crsd, app).await, charged, "one charge");
    let all = c.ok("DescribeInstances", json!({})).await;
    assert_eq!(all["TotalCount"], 1, "one instance: {all}");
    assert_eq!(all["InstanceSet"][0]["Status"], 2, "still running: {all}");
}

/// Every field of the model's `InstanceSet` (61), with the model's JSON type: typed clients
/// (the Go SDK, Terraform's provider) dereference them all.
fn assert_instance_set_fields(e: &Value) {
    let ints = "Appid ProjectId RegionId ZoneId VpcId SubnetId Status Port Type AutoRenewFlag \
        BillingMode SubStatus RedisShardSize RedisShardNum RedisReplicasNum PriceId \
        SlaveReadWeight ClientLimit DtsStatus NetLimit PasswordFree ReadOnly DiskSize \
        ClientLimitMin ClientLimitMax DeleteProtectionSwitch";
    let strs = "InstanceName InstanceId WanIp Createtime DeadlineTime Engine ProductType \
        UniqVpcId UniqSubnetId InstanceTitle OfflineTime CloseTime ProjectName Vip6 IPv6 \
        RemainBandwidthDuration MonitorVersion Region WanAddress PolarisServer RedisClusterId \
        DedicatedClusterId ProductVersion CurrentProxyVersion CurrentRedisVersion \
        UpgradeProxyVersion UpgradeRedisVersion BackupMode";
    let floats = "Size SizeUsed";
    let lists = "Tags InstanceNode InstanceTags NodeSet";
    let bools = "NoAuth";
    let mut n = 0;
    for (names, ok) in [
        (ints, Value::is_i64 as fn(&Value) -> bool),
        (strs, Value::is_string),
        (floats, Value::is_f64),
        (lists, Value::is_array),
        (bools, Value::is_boolean),
    ] {
        for name in names.split_whitespace() {
            n += 1;
            assert!(ok(&e[name]), "{name} of the model's type: {e}");
        }
    }
    assert_eq!(n, 61);
    assert_eq!(
        e.as_object().unwrap().len(),
        61,
        "no field beyond the model: {e}"
    );
}

// ------------------------------------------------------------------- replicas: sold, priced, changed

/// The error Message of a refusal, which must name the request's field.
fn message_names(r: &Value, field: &str) {
    let m = r["Error"]["Message"].as_str().unwrap_or_default();
    assert!(m.contains(field), "the message names {field}: {r}");
}

/// What the catalog's default rule charges a month for 1 GB with `replicas` replicas: the
/// configured 8000 is a master with one replica, each further replica adds 50 %.
fn month_price_1gb(replicas: i64) -> i64 {
    8000 + 4000 * (replicas - 1)
}

#[tokio::test]
async fn replicas_are_sold_and_priced_by_the_catalog_rule() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let app = common::main_app_id(&crsd);

    // Every product lists the replica counts it sells; a standard one one shard, the
    // cluster edition its shard counts.
    let r = c.ok("DescribeProductInfo", json!({})).await;
    let products: Vec<&Value> = r["RegionSet"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|reg| reg["ZoneSet"].as_array().unwrap())
        .flat_map(|z| z["ProductSet"].as_array().unwrap())
        .collect();
    assert!(!products.is_empty(), "{r}");
    for p in products {
        assert_eq!(p["ReplicaNum"], json!(["1", "2", "3", "4", "5"]), "{p}");
        let shards = match p["Type"].as_i64() {
            Some(17) => json!(["1"]),
            Some(18) => json!(["1", "3", "5", "8", "12", "16", "24", "32"]),
            other => panic!("an unknown product type {other:?}: {p}"),
        };
        assert_eq!(p["ShardNum"], shards, "{p}");
    }

    // InquiryPriceCreateInstance prices the replica count.
    let quote = |billing: i64, mem: i64, num: i64, period: i64, replicas: Option<i64>| {
        let mut q = json!({"TypeId": 17, "MemSize": mem, "GoodsNum": num, "Period": period,
            "BillingMode": billing, "ZoneId": 100002});
        if let Some(n) = replicas {
            q["RedisReplicasNum"] = json!(n);
        }
        q
    };
    for (q, want) in [
        // The seed's price is one replica's, asked for or by default.
        (quote(1, 1024, 1, 2, None), 2 * month_price_1gb(1)),
        (quote(1, 1024, 1, 2, Some(1)), 2 * month_price_1gb(1)),
        (quote(1, 1024, 1, 2, Some(3)), 2 * month_price_1gb(3)),
        (quote(1, 2048, 2, 1, Some(3)), 2 * 2 * month_price_1gb(3)),
        (quote(1, 1024, 1, 1, Some(5)), month_price_1gb(5)),
        // Postpaid: an hour of the month price, rounded up: 16000 / 720 = 22.2.
        (quote(0, 1024, 1, 1, Some(3)), 23),
        (quote(0, 1024, 1, 1, Some(1)), 12),
    ] {
        let r = c.ok("InquiryPriceCreateInstance", q.clone()).await;
        assert_eq!(r["Price"], want as f64, "{q}: {r}");
    }
    for bad in [0, 6] {
        let r = c
            .err(
                "InquiryPriceCreateInstance",
                quote(1, 1024, 1, 1, Some(bad)),
                "InvalidParameterValue",
            )
            .await;
        message_names(&r, "RedisReplicasNum");
    }
    let mut q = quote(1, 1024, 1, 1, Some(2));
    q["RedisShardNum"] = json!(3);
    let r = c
        .err("InquiryPriceCreateInstance", q, "InvalidParameterValue")
        .await;
    message_names(&r, "RedisShardNum");

    // CreateInstances: 0 or 6 replicas buy nothing; 3 are charged the price of 3.
    let before = common::balance(&crsd, app).await;
    let order = json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
        "BillingMode": 1, "ZoneId": 100002, "Password": "Api3-Password-Long-2024",
        "RedisShardNum": 1, "RedisReplicasNum": 3});
    for bad in [0, 6] {
        let mut o = order.clone();
        o["RedisReplicasNum"] = json!(bad);
        let r = c.err("CreateInstances", o, "InvalidParameterValue").await;
        message_names(&r, "RedisReplicasNum");
    }
    assert_eq!(common::balance(&crsd, app).await, before, "nothing charged");
    assert_eq!(
        v2.ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
            .await["totalCount"],
        0,
        "nothing created"
    );
    let r = c.ok("CreateInstances", order).await;
    assert_eq!(
        common::balance(&crsd, app).await,
        before - month_price_1gb(3),
        "a month of 3 replicas: {r}"
    );
    let deal = r["DealId"].as_str().unwrap().to_string();
    let d = c
        .ok("DescribeInstanceDealDetail", json!({ "DealIds": [deal] }))
        .await;
    assert_eq!(
        d["DealDetails"][0]["Price"],
        month_price_1gb(3) as f64,
        "{d}"
    );
    assert_eq!(v2.wait_deal(&deal).await.len(), 1);

    // InquiryPriceUpgradeInstance: a replica change (the current MemSize repeated) is
    // prorated like a resize. From one replica to three adds 8000 a month, as 1 -> 2 GB does.
    let made = create(&v2, 1).await;
    let id = v2_id(&made[0]);
    let upgrade = |mem: i64, shards: Option<i64>, replicas: Option<i64>| {
        let mut q = json!({"InstanceId": id, "MemSize": mem});
        if let Some(n) = shards {
            q["RedisShardNum"] = json!(n);
        }
        if let Some(n) = replicas {
            q["RedisReplicasNum"] = json!(n);
        }
        q
    };
    let deadline = parse_time(&crsd, &made[0]["deadlineTime"]);
    let remaining = deadline - common::service(&crsd).now();
    let months = remaining.num_milliseconds() as f64 / 1000.0 / (30.0 * 86400.0);
    let want = (month_price_1gb(3) - month_price_1gb(1)) as f64 * months;
    let r = c
        .ok(
            "InquiryPriceUpgradeInstance",
            upgrade(1024, Some(1), Some(3)),
        )
        .await;
    let replicas3 = r["Price"].as_f64().unwrap();
    assert!(
        (replicas3 - want).abs() <= 2.0,
        "{replicas3} is not pro rata ({want})"
    );
    let r = c
        .ok("InquiryPriceUpgradeInstance", upgrade(2048, None, None))
        .await;
    let mem2048 = r["Price"].as_f64().unwrap();
    assert!(
        (replicas3 - mem2048).abs() <= 1.0,
        "{replicas3} vs {mem2048}"
    );
    let r = c
        .ok("InquiryPriceUpgradeInstance", upgrade(1024, None, Some(5)))
        .await;
    let replicas5 = r["Price"].as_f64().unwrap();
    assert!(
        (replicas5 - 2.0 * replicas3).abs() <= 2.0,
        "{replicas5} vs 2 x {replicas3}"
    );
    for (q, code, field) in [
        (
            upgrade(1024, None, Some(0)),
            "InvalidParameterValue",
            "RedisReplicasNum",
        ),
        (
            upgrade(1024, None, Some(6)),
            "InvalidParameterValue",
            "RedisReplicasNum",
        ),
        (
            upgrade(2048, None, Some(3)),
            "InvalidParameterValue",
            "RedisReplicasNum",
        ),
        (
            upgrade(1024, Some(3), None),
            "InvalidParameterValue",
            "RedisShardNum",
        ),
        // Nothing changes: refused as the shrink it always was.
        (
            upgrade(1024, Some(1), Some(1)),
            "InvalidParameterValue.ReduceCapacityNotAllowed",
            "1024",
        ),
    ] {
        let r = c.err("InquiryPriceUpgradeInstance", q.clone(), code).await;
        message_names(&r, field);
    }
}

#[tokio::test]
async fn upgrade_instance_changes_one_field_and_a_replica_change_is_a_deal() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    let c = Tc3Client::new(&crsd);
    let app = common::main_app_id(&crsd);
    let svc = common::service(&crsd);
    let made = create(&v2, 1).await;
    let id = v2_id(&made[0]);
    let tasks = |c: Tc3Client, id: String| async move {
        c.ok("DescribeTaskList", json!({"InstanceId": id, "Limit": 100}))
            .await["TotalCount"]
            .as_i64()
            .unwrap()
    };
    let before = common::balance(&crsd, app).await;
    let tasks_before = tasks(c.clone(), id.clone()).await;
    let unchanged = |what: String| {
        let (c, v2, crsd, id) = (c.clone(), v2.clone(), &crsd, id.clone());
        async move {
            assert_eq!(
                common::balance(crsd, app).await,
                before,
                "{what}: nothing charged"
            );
            let v = v2.describe_one(&id).await;
            assert_eq!(v["size"], 1024, "{what}: {v}");
            assert_eq!(v["status"], 2, "{what}: {v}");
            assert_eq!(tasks(c, id).await, tasks_before, "{what}: no task");
        }
    };

    // Refusals: each with the documented code, the field named, nothing changed.
    for (q, code, field) in [
        (
            json!({"MemSize": 1024, "RedisReplicasNum": 0}),
            "InvalidParameterValue",
            "RedisReplicasNum",
        ),
        (
            json!({"MemSize": 1024, "RedisReplicasNum": 6}),
            "InvalidParameterValue",
            "RedisReplicasNum",
        ),
        (
            json!({"MemSize": 2048, "RedisShardNum": 1, "RedisReplicasNum": 2}),
            "InvalidParameterValue",
            "MemSize",
        ),
        (
            json!({"MemSize": 1024, "RedisShardNum": 3}),
            "InvalidParameterValue",
            "RedisShardNum",
        ),
    ] {
        let mut q = q;
        q["InstanceId"] = json!(id);
        let r = c.err("UpgradeInstance", q.clone(), code).await;
        message_names(&r, field);
        unchanged(format!("{q}")).await;
    }
    // A busy instance (held by a task) takes no change.
    let held = {
        let mut tx = svc.store().write().await.unwrap();
        let mut inst = tx.instance(&id).await.unwrap().unwrap();
        let original = inst.clone();
        inst.status = crsd_core::model::InstanceStatus::Busy;
        inst.lock_task = Some(i64::MAX);
        tx.update_instance(&inst).await.unwrap();
        tx.commit().await.unwrap();
        original
    };
    let busy = json!({"InstanceId": id, "MemSize": 1024, "RedisReplicasNum": 3});
    c.err(
        "UpgradeInstance",
        busy.clone(),
        "ResourceUnavailable.InstanceStatusAbnormal",
    )
    .await;
    c.err(
        "InquiryPriceUpgradeInstance",
        busy,
        "ResourceUnavailable.InstanceStatusAbnormal",
    )
    .await;
    assert_eq!(
        common::balance(&crsd, app).await,
        before,
        "busy: nothing charged"
    );
    {
        let mut tx = svc.store().write().await.unwrap();
        let inst = tx.instance(&id).await.unwrap().unwrap();
        assert_eq!(
            inst.lock_task,
            Some(i64::MAX),
            "busy: still held, by the same task"
        );
        tx.update_instance(&held).await.unwrap();
        tx.commit().await.unwrap();
    }
    unchanged("released".into()).await;

    // A replica change (the current MemSize repeated) is charged and recorded as a deal and
    // a task of its own kind (the model's "029", nodes added or removed).
    let q = json!({"InstanceId": id, "MemSize": 1024, "RedisShardNum": 1, "RedisReplicasNum": 3});
    let quoted = c.ok("InquiryPriceUpgradeInstance", q.clone()).await["Price"]
        .as_f64()
        .unwrap();
    let r = c.ok("UpgradeInstance", q).await;
    let deal = r["DealId"].as_str().unwrap().to_string();
    assert!(r["DealName"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    let d = c
        .ok("DescribeInstanceDealDetail", json!({ "DealIds": [deal] }))
        .await;
    let price = d["DealDetails"][0]["Price"].as_f64().unwrap();
    assert!(
        price > 0.0 && (price - quoted).abs() <= 1.0,
        "{price} vs {quoted}: {d}"
    );
    let charged = before - price as i64;
    assert_eq!(d["DealDetails"][0]["InstanceIds"], json!([id]), "{d}");
    let v = v2
        .ok("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
        .await;
    let goods = &v["dealDetails"][0]["goodsDetail"];
    assert_eq!(goods["oldReplicasNum"], 1, "{v}");
    assert_eq!(goods["newReplicasNum"], 3, "{v}");
    assert_eq!(goods["memSize"], 1024, "{v}");
    let r = c
        .ok(
            "DescribeTaskList",
            json!({"InstanceId": id, "TaskTypes": ["029"], "Limit": 10}),
        )
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    let task = r["Tasks"][0]["TaskId"].as_i64().unwrap();
    // It delivers: the charge stays, the deal is delivered, the instance has 3 replicas.
    assert_eq!(wait_task3(&c, task).await, "succeed");
    let d = c
        .ok("DescribeInstanceDealDetail", json!({ "DealIds": [deal] }))
        .await;
    assert_eq!(common::balance(&crsd, app).await, charged);
    assert_eq!(d["DealDetails"][0]["Status"], 4, "{d}");
    let replicas = 3;
    let r = c.ok("DescribeInstances", json!({ "InstanceId": id })).await;
    assert_eq!(r["InstanceSet"][0]["RedisReplicasNum"], replicas, "{r}");
    let v = v2.describe_one(&id).await;
    assert_eq!(v["status"], 2, "{v}");
    assert_eq!(v["size"], 1024, "{v}");

    // With the current replicas repeated, a larger MemSize is a resize, as it always was.
    let r = c
        .ok(
            "UpgradeInstance",
            json!({"InstanceId": id, "MemSize": 2048, "RedisShardNum": 1, "RedisReplicasNum": replicas}),
        )
        .await;
    assert!(r["DealName"].as_str().is_some_and(|s| !s.is_empty()), "{r}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while v2.describe_one(&id).await["size"] != 2048 {
        assert!(Instant::now() < deadline, "the resize did not land");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
