//! The Capital Online (首云 cdsapi) Redis OpenAPI on `/redis` and `/redis/`, end to end: real
//! HTTP, real redis-server processes, real backup files. Requests are signed here by a small
//! signer written from the published spec (HMAC-SHA1 over `METHOD&%2F&enc(canonical)`, the
//! bare secret as key), checked against the computed vectors, independent of
//! `crsd_api::sign_co`. Requests are sent the ways the reference clients send them: the Go SDK
//! (POST JSON without Content-Type, unset fields as `null`), the doc's Python code (GET with
//! the business parameters repeated after `Signature`) and cds-python-sdk (POST with the
//! business parameters both signed in the query and in the JSON body).

mod common;

use base64::Engine as _;
use common::{balance, main_app_id, other_account, parse_time, redis_conn, service, TestCrsd};
use crsd_core::clock::{Clock as _, OffsetClock};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Passw0rd!";
const VERSION: &str = "2019-08-08";
const REGION: &str = "CN_Guangzhou_A";
/// `PaasGoodsId` of the 1 GB master-replica spec.
const GOODS_1G: i64 = 70001;

// ------------------------------------------------------------------------------ the signer

/// `enc()` of the spec: UTF-8 bytes, `A-Z a-z 0-9 - _ . ~` kept, the rest `%XY` uppercase.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `METHOD&%2F&enc(canonical)`: every parameter but `Signature`, the first of a repeated
/// name, sorted by name (bytes), `enc(k)=enc(v)` joined by `&`.
fn string_to_sign(method: &str, pairs: &[(String, String)]) -> String {
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in pairs {
        if k != "Signature" {
            first.entry(k.as_str()).or_insert(v.as_str());
        }
    }
    let canonical: Vec<String> = first
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    format!("{method}&%2F&{}", enc(&canonical.join("&")))
}

/// Base64(HMAC-SHA1(key, string to sign)).
fn signature(method: &str, pairs: &[(String, String)], key: &str) -> String {
    let mut m = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
    m.update(string_to_sign(method, pairs).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// The query as Python's `urlencode` / Go's `url.Values.Encode` write it (space as `+`).
fn form(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ------------------------------------------------------------------------------ the client

static NONCE: AtomicU64 = AtomicU64::new(1);

/// A fresh uuid-shaped nonce (the SDKs send uuids), unique within this run.
fn nonce() -> String {
    let n = NONCE.fetch_add(1, Ordering::SeqCst);
    format!("{:08x}-c0c0-4000-8000-{n:012x}", std::process::id())
}

/// An HTTP answer: status and the JSON envelope.
#[derive(Debug)]
struct Resp {
    status: u16,
    body: Value,
}

impl Resp {
    /// Asserts HTTP 200 and Code "Success"; the envelope.
    fn ok(self, what: &str) -> Value {
        assert_eq!(self.status, 200, "{what}: {}", self.body);
        assert_eq!(self.body["Code"], "Success", "{what}: {}", self.body);
        assert!(self.body["TaskId"].is_string(), "{what}: {}", self.body);
        self.body
    }

    /// Asserts a refusal: HTTP status and Code; the Message.
    fn refused(self, status: u16, code: &str, what: &str) -> String {
        assert_eq!(
            (self.status, self.body["Code"].as_str()),
            (status, Some(code)),
            "{what}: {}",
            self.body
        );
        assert!(self.body["Data"].is_null(), "{what}: {}", self.body);
        self.body["Message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// A Capital Online API client for one account.
struct Co {
    base: String,
    access_key: String,
    secret: String,
    clock: Arc<OffsetClock>,
    http: reqwest::Client,
}

/// How a request's body goes out.
enum Body {
    None,
    /// Raw bytes with this Content-Type, or none (the Go SDK).
    Raw(Vec<u8>, Option<&'static str>),
}

impl Co {
    fn new(crsd: &TestCrsd) -> Co {
        Co {
            base: crsd.url.clone(),
            access_key: crsd.secret_id.clone(),
            secret: crsd.secret_key.clone(),
            clock: crsd.clock.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// The same client signing with another account's keys.
    fn with_keys(&self, access_key: &str, secret: &str) -> Co {
        Co {
            base: self.base.clone(),
            access_key: access_key.to_string(),
            secret: secret.to_string(),
            clock: self.clock.clone(),
            http: self.http.clone(),
        }
    }

    fn timestamp(&self, shift_secs: i64) -> String {
        (self.clock.now() + chrono::Duration::seconds(shift_secs))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// The common parameters in the reference code's order, with a fresh nonce and the
    /// harness clock's time.
    fn common(&self, action: &str) -> Vec<(String, String)> {
        owned(&[
            ("Action", action),
            ("AccessKeyId", &self.access_key),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", &nonce()),
            ("SignatureVersion", "1.0"),
            ("Timestamp", &self.timestamp(0)),
            ("Version", VERSION),
        ])
    }

    /// `pairs` plus their `Signature` (last, as the reference code puts it).
    fn sign(&self, method: &str, mut pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        let sig = signature(method, &pairs, &self.secret);
        pairs.push(("Signature".into(), sig));
        pairs
    }

    async fn send(&self, method: &str, path: &str, query: &str, body: Body) -> Resp {
        let url = format!("{}{path}?{query}", self.base);
        let mut req = match method {
            "GET" => self.http.get(&url),
            "POST" => self.http.post(&url),
            other => panic!("no method {other}"),
        };
        if let Body::Raw(bytes, content_type) = body {
            if let Some(ct) = content_type {
                req = req.header("Content-Type", ct);
            }
            req = req.body(bytes);
        }
        let resp = req.send().await.expect("the request reaches crsd");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("a JSON envelope, got {status}: {text}"));
        Resp { status, body }
    }

    /// GET on `/redis/` with the business parameters in the signed query.
    async fn get(&self, action: &str, params: &[(&str, &str)]) -> Resp {
        let mut pairs = self.common(action);
        pairs.extend(owned(params));
        let q = form(&self.sign("GET", pairs));
        self.send("GET", "/redis/", &q, Body::None).await
    }

    /// POST on `/redis/` as the doc's Python code: only the common parameters signed in the
    /// query, the business parameters as a JSON body (Content-Type application/json).
    async fn post(&self, action: &str, body: Value) -> Resp {
        let q = form(&self.sign("POST", self.common(action)));
        let bytes = body.to_string().into_bytes();
        self.send(
            "POST",
            "/redis/",
            &q,
            Body::Raw(bytes, Some("application/json")),
        )
        .await
    }

    /// POST as cds-gic-sdk-go: common parameters signed in the query, the raw JSON body and
    /// no Content-Type header at all.
    async fn post_go(&self, action: &str, raw_json: &str) -> Resp {
        let q = form(&self.sign("POST", self.common(action)));
        self.send(
            "POST",
            "/redis/",
            &q,
            Body::Raw(raw_json.as_bytes().to_vec(), None),
        )
        .await
    }

    // ---- actions

    async fn instances(&self, filters: &[(&str, &str)]) -> Vec<Value> {
        let v = self
            .get("DescribeDBInstances", filters)
            .await
            .ok("DescribeDBInstances");
        v["Data"]
            .as_array()
            .unwrap_or_else(|| panic!("Data is an array: {v}"))
            .clone()
    }

    async fn instance(&self, id: &str) -> Option<Value> {
        let list = self.instances(&[("InstanceUuid", id)]).await;
        assert!(list.len() <= 1, "{list:?}");
        list.into_iter().next()
    }

    /// Polls DescribeDBInstances(InstanceUuid) until `Status` is `status`.
    async fn wait_status(&self, id: &str, status: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let i = self.instance(id).await;
            if let Some(i) = &i {
                assert_ne!(i["Status"], "DELETED", "{i}");
                if i["Status"] == status {
                    return i.clone();
                }
            }
            assert!(Instant::now() < deadline, "{id} never {status}: {i:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls until DescribeDBInstances(InstanceUuid) is `[]`.
    async fn wait_gone(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(45);
        while let Some(i) = self.instance(id).await {
            assert!(Instant::now() < deadline, "{id} still listed: {i}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn backups(&self, id: &str) -> Vec<Value> {
        let v = self
            .get("DescribeBackups", &[("InstanceUuid", id)])
            .await
            .ok("DescribeBackups");
        v["Data"]
            .as_array()
            .unwrap_or_else(|| panic!("Data is an array: {v}"))
            .clone()
    }

    /// Polls DescribeBackups until `n` backups are listed, all "finished"; waits for the
    /// instance to be RUNNING again (the backup task released it).
    async fn wait_backups_finished(&self, id: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let list = self.backups(id).await;
            if list.len() == n && list.iter().all(|b| b["Status"] == "finished") {
                self.wait_status(id, "RUNNING").await;
                return list;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: not {n} finished: {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// CreateDBInstance (doc style) of `amount` 1 GB instances with `extra` fields merged
    /// in; the new ids and the task id.
    async fn create(&self, name: &str, extra: Value) -> (Vec<String>, String) {
        let v = self
            .post("CreateDBInstance", create_body(name, extra))
            .await
            .ok("CreateDBInstance");
        ids_of(&v)
    }

    /// Creates one instance and waits until it is RUNNING.
    async fn create_running(&self, name: &str) -> Value {
        let (ids, _) = self.create(name, json!({})).await;
        assert_eq!(ids.len(), 1);
        self.wait_status(&ids[0], "RUNNING").await
    }
}

/// A CreateDBInstance body with every required field, `extra` merged over it (a `null`
/// removes nothing: it is sent as null).
fn create_body(name: &str, extra: Value) -> Value {
    let mut body = json!({
        "RegionId": REGION,
        "VdcId": "vdc-0001",
        "BasePipeId": "pipe-0001",
        "InstanceName": name,
        "PaasGoodsId": GOODS_1G,
        "Password": PASSWORD,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// `Data.InstancesUuid` and `TaskId` of a CreateDBInstance answer.
fn ids_of(v: &Value) -> (Vec<String>, String) {
    let ids: Vec<String> = v["Data"]["InstancesUuid"]
        .as_array()
        .unwrap_or_else(|| panic!("Data.InstancesUuid is an array: {v}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let task = v["TaskId"].as_str().unwrap().to_string();
    assert!(!task.is_empty(), "a TaskId: {v}");
    (ids, task)
}

fn id_of(inst: &Value) -> String {
    inst["InstanceUuid"].as_str().unwrap().to_string()
}

fn port_of(inst: &Value) -> u16 {
    inst["Port"].as_u64().expect("Port is a number") as u16
}

fn backup_file(crsd: &TestCrsd, id: &str, backup_id: &str) -> PathBuf {
    crsd.data_dir()
        .join("backups")
        .join(id)
        .join(format!("{backup_id}.rdb"))
}

fn instance_folder(crsd: &TestCrsd, id: &str) -> PathBuf {
    crsd.data_dir().join("instances").join(id)
}

async fn fetch(url: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::get(url).await.expect("the download reaches crsd");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(500),
    )
    .is_ok()
}

async fn set_get(host: &str, port: u16, key: &str, value: &str) {
    let mut conn = redis_conn(host, port, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("redis at {host}:{port}: {e}"));
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(value));
}

/// v2 DescribeRedis of one id: `(totalCount, first row)`.
async fn v2_describe(crsd: &TestCrsd, id: &str) -> (i64, Value) {
    let v = crsd
        .client()
        .ok(
            "DescribeRedis",
            &[("limit", "10"), ("offset", "0"), ("redisId", id)],
        )
        .await;
    (
        v["totalCount"].as_i64().unwrap(),
        v["data"]["redisSet"][0].clone(),
    )
}

// ------------------------------------------------------------------------------ the signer itself

/// The computed vectors of the research notes (the doc's reference code, the Go SDK and two
/// independent implementations agree on them), so the requests below are signed per spec.
#[test]
fn the_test_signer_reproduces_the_published_vectors() {
    let common = |action: &str| {
        owned(&[
            ("Action", action),
            ("AccessKeyId", "testAccessKeyId"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3e1b7f4a-8c1d-11ee-b962-0242ac120002"),
            ("SignatureVersion", "1.0"),
            ("Timestamp", "2024-01-02T03:04:05Z"),
            ("Version", VERSION),
        ])
    };
    let v1 = common("DescribeRegins");
    assert_eq!(
        string_to_sign("GET", &v1),
        "GET&%2F&AccessKeyId%3DtestAccessKeyId%26Action%3DDescribeRegins%26SignatureMethod%3D\
         HMAC-SHA1%26SignatureNonce%3D3e1b7f4a-8c1d-11ee-b962-0242ac120002%26SignatureVersion\
         %3D1.0%26Timestamp%3D2024-01-02T03%253A04%253A05Z%26Version%3D2019-08-08"
    );
    assert_eq!(
        signature("GET", &v1, "testSecretKey"),
        "VHuwHxUMJVdia0T61fZRx6cF7iU="
    );
    assert_eq!(
        signature("GET", &v1, "testSecretKey&"),
        "cKL8beARySrDnQbsW9n4Tc5dm5s=",
        "the &-key variant, refused below"
    );
    let mut v2 = common("DescribeAvailableDBConfig");
    v2.push(("RegionId".into(), "CN_Beijing_A".into()));
    assert_eq!(
        signature("GET", &v2, "testSecretKey"),
        "z6Dmdb1NYw95gf80Wyvyh1Pm1X4="
    );
    let mut v3 = common("DescribeDBInstances");
    v3.extend(owned(&[
        ("InstanceName", "my redis/测试*~'"),
        ("IP", "10.240.17.13"),
    ]));
    assert_eq!(
        signature("GET", &v3, "testSecretKey"),
        "SbZQUmsJQomQKSm8gRlIy/UAhm4="
    );
    // Repeats after Signature do not change it (first wins).
    let mut dup = v3.clone();
    dup.push(("Signature".into(), "x".into()));
    dup.push(("IP".into(), "changed".into()));
    assert_eq!(
        signature("GET", &dup, "testSecretKey"),
        "SbZQUmsJQomQKSm8gRlIy/UAhm4="
    );
    assert_eq!(
        signature("POST", &common("CreateDBInstance"), "testSecretKey"),
        "gaAmO3i6+x8zCAI+td5sx+QgwLY="
    );
}

// ------------------------------------------------------------------------------ 1. the doc's flow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doc_flow_from_regions_to_deleted_instance() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let (lo, hi) = (
        crsd.config.instances.port_min,
        crsd.config.instances.port_max,
    );

    // 1. DescribeRegins: an array of sites.
    let v = co.get("DescribeRegins", &[]).await.ok("DescribeRegins");
    assert_eq!(v["TaskId"], "", "{v}");
    let regions = v["Data"].as_array().expect("Data is an array");
    let sites: Vec<&str> = regions
        .iter()
        .map(|r| r["RegionId"].as_str().unwrap())
        .collect();
    for site in [
        "CN_Guangzhou_A",
        "CN_Shanghai_A",
        "CN_Hongkong_A",
        "US_SiliconValley_A",
    ] {
        assert!(sites.contains(&site), "{site} in {sites:?}");
    }
    let gz = regions.iter().find(|r| r["RegionId"] == REGION).unwrap();
    assert_eq!(gz["IsSaling"], json!(1), "IsSaling is the number 1: {gz}");
    assert_eq!(gz["RegionName"], "中国大陆", "{gz}");
    for field in ["CityId", "CityName", "SiteName"] {
        assert!(
            gz[field].as_str().is_some_and(|s| !s.is_empty()),
            "{field}: {gz}"
        );
    }

    // 2. DescribeAvailableDBConfig: the 1 GB spec of the master-replica architecture.
    let v = co
        .get("DescribeAvailableDBConfig", &[("RegionId", REGION)])
        .await
        .ok("DescribeAvailableDBConfig");
    let data = &v["Data"];
    assert_eq!(data["ProductName"], "redis", "{v}");
    assert_eq!(data["RegionId"], REGION, "{v}");
    let arch = &data["Products"][0]["Architectures"][0];
    assert!(arch["ArchitectureType"].is_i64(), "a number: {arch}");
    assert!(arch["EnginesType"].is_array(), "{arch}");
    let specs = arch["ComputeRoles"][0]["Standards"]["CpuRam"]
        .as_array()
        .expect("CpuRam is an array");
    for s in specs {
        assert!(s["PaasGoodsId"].is_i64() && s["RAM"].is_i64(), "{s}");
    }
    let one = specs
        .iter()
        .find(|s| s["PaasGoodsId"] == json!(GOODS_1G))
        .expect("the 1 GB spec");
    assert_eq!(one["RAM"], json!(1), "{one}");

    // 3. CreateDBInstance exactly as cds-gic-sdk-go sends it: no Content-Type, nulls.
    let raw = format!(
        r#"{{"RegionId":"{REGION}","VdcId":"vdc-doc-1","BasePipeId":"pipe-doc-1","InstanceName":"doc-redis","PaasGoodsId":{GOODS_1G},"Password":"{PASSWORD}","ServicePort":null,"Amount":null,"TestGroupId":null,"SubjectId":null}}"#
    );
    let v = co
        .post_go("CreateDBInstance", &raw)
        .await
        .ok("CreateDBInstance");
    let (ids, _task) = ids_of(&v);
    assert_eq!(ids.len(), 1, "{v}");
    let id = ids[0].clone();

    // 4. DescribeDBInstances until RUNNING; the documented fields and JSON types.
    let inst = co.wait_status(&id, "RUNNING").await;
    assert_eq!(inst["InstanceName"], "doc-redis", "{inst}");
    assert_eq!(inst["VdcId"], "vdc-doc-1", "{inst}");
    assert_eq!(inst["RegionId"], REGION, "{inst}");
    assert_eq!(inst["StatusStr"], "运行中", "{inst}");
    assert_eq!(inst["Ram"], json!(1024), "Ram is a number in MB: {inst}");
    assert_eq!(inst["MasterInfo"], "", "MasterInfo is a string: {inst}");
    assert!(inst["Tags"].is_array(), "{inst}");
    let port = port_of(&inst);
    assert!((lo..=hi).contains(&port), "{port} within {lo}-{hi}");
    let ip = inst["IP"].as_str().unwrap().to_string();
    assert_eq!(ip, "127.0.0.1");
    parse_time(&crsd, &inst["CreatedTime"]);
    let folder = instance_folder(&crsd, &id);
    assert!(folder.is_dir(), "{folder:?} while the instance lives");
    let replica_port = service(&crsd)
        .store()
        .instance(&id)
        .await
        .unwrap()
        .unwrap()
        .replicas()
        .next()
        .expect("a replica")
        .port;

    // 5. The instance serves its user at IP:Port with the password.
    set_get(&ip, port, "doc:key", "值 value").await;

    // 6. CreateBackup, then DescribeBackups until finished.
    let desc = "手动备份 测试 #1";
    let v = co
        .post("CreateBackup", json!({ "InstanceUuid": id, "Desc": desc }))
        .await
        .ok("CreateBackup");
    assert!(!v["TaskId"].as_str().unwrap().is_empty(), "{v}");
    assert_eq!(v["Data"], json!({}), "{v}");
    let list = co.wait_backups_finished(&id, 1).await;
    let b = &list[0];
    let backup_id = b["BackupId"].as_str().unwrap().to_string();
    let size = b["BackupSize"].as_u64().expect("BackupSize is a number");
    assert!(size > 0, "{b}");
    assert_eq!(b["Desc"], desc, "{b}");
    assert_eq!(b["BackupMode"], "manual", "{b}");
    assert_eq!(b["BackupType"], "full-backup", "{b}");
    assert_eq!(b["InstanceId"], id.as_str(), "{b}");
    parse_time(&crsd, &b["StartTime"]);
    parse_time(&crsd, &b["EndTime"]);

    // 7. DownloadBackup: both URLs serve exactly the stored RDB file.
    let v = co
        .get(
            "DownloadBackup",
            &[("InstanceUuid", &id), ("BackupId", &backup_id)],
        )
        .await
        .ok("DownloadBackup");
    let d = &v["Data"];
    assert_eq!(d["BackupId"], backup_id.as_str(), "{v}");
    assert_eq!(d["BackupSize"], json!(size), "{v}");
    assert_eq!(d["ShardId"], "", "{v}");
    let file = backup_file(&crsd, &id, &backup_id);
    let on_disk = std::fs::read(&file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
    let mut urls = Vec::new();
    for field in ["BackupDownloadUrl", "BackupIntranetDownloadUrl"] {
        let url = d[field].as_str().unwrap().to_string();
        let (status, bytes) = fetch(&url).await;
        assert_eq!(status, 200, "{field} {url}");
        assert_eq!(bytes.len() as u64, size, "{field}");
        assert!(bytes.starts_with(b"REDIS"), "{field}: an RDB file");
        assert_eq!(bytes, on_disk, "{field}: the stored file");
        urls.push(url);
    }

    // 8. DeleteBackup: synchronous; record, file and download gone.
    let v = co
        .post(
            "DeleteBackup",
            json!({ "InstanceUuid": id, "BackupId": backup_id }),
        )
        .await
        .ok("DeleteBackup");
    assert_eq!(v["TaskId"], "", "no task: {v}");
    assert!(!file.exists(), "{file:?} removed");
    for url in &urls {
        assert_eq!(fetch(url).await.0, 404, "{url} after the delete");
    }
    assert_eq!(co.backups(&id).await, Vec::<Value>::new());
    co.get(
        "DownloadBackup",
        &[("InstanceUuid", &id), ("BackupId", &backup_id)],
    )
    .await
    .refused(
        404,
        "ResourceNotFound",
        "DownloadBackup of a deleted backup",
    );

    // 9. DeleteDBInstance: gone from every listing, ports closed, folder removed.
    let v = co
        .post("DeleteDBInstance", json!({ "InstanceUuid": id }))
        .await
        .ok("DeleteDBInstance");
    assert!(!v["TaskId"].as_str().unwrap().is_empty(), "{v}");
    co.wait_gone(&id).await;
    assert_eq!(co.instances(&[]).await, Vec::<Value>::new());
    assert_eq!(v2_describe(&crsd, &id).await.0, 0, "v2 no longer lists it");
    assert!(!listening(port), "nothing listens on {port}");
    assert!(
        !listening(replica_port),
        "nothing listens on {replica_port}"
    );
    assert!(!folder.exists(), "{folder:?} removed");
    co.get("DescribeBackups", &[("InstanceUuid", &id)])
        .await
        .refused(
            404,
            "ResourceNotFound",
            "DescribeBackups of a deleted instance",
        );
}

// ------------------------------------------------------------------------------ 2. wire forms

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_clients_wire_forms_are_accepted() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);

    // The 2026 reference client: the business parameters again after Signature.
    let mut pairs = co.common("DescribeAvailableDBConfig");
    pairs.push(("RegionId".into(), "CN_Shanghai_A".into()));
    let mut signed = co.sign("GET", pairs);
    signed.push(("RegionId".into(), "CN_Shanghai_A".into()));
    let v = co
        .send("GET", "/redis/", &form(&signed), Body::None)
        .await
        .ok("repeated after Signature");
    assert_eq!(v["Data"]["RegionId"], "CN_Shanghai_A", "{v}");

    // A different repeat: the first occurrence counts, for the signature and the action.
    let mut pairs = co.common("DescribeAvailableDBConfig");
    pairs.push(("RegionId".into(), "CN_Hongkong_A".into()));
    let mut signed = co.sign("GET", pairs);
    signed.push(("RegionId".into(), "CN_Nowhere_A".into()));
    let v = co
        .send("GET", "/redis/", &form(&signed), Body::None)
        .await
        .ok("first occurrence wins");
    assert_eq!(v["Data"]["RegionId"], "CN_Hongkong_A", "{v}");

    // A GET with a JSON body (the reference passes json=body on GET too): ignored.
    let mut pairs = co.common("DescribeAvailableDBConfig");
    pairs.push(("RegionId".into(), REGION.into()));
    let q = form(&co.sign("GET", pairs));
    let body = json!({ "RegionId": "CN_Nowhere_A" })
        .to_string()
        .into_bytes();
    let v = co
        .send(
            "GET",
            "/redis/",
            &q,
            Body::Raw(body, Some("application/json")),
        )
        .await
        .ok("GET with a body");
    assert_eq!(v["Data"]["RegionId"], REGION, "{v}");
    // Even a body that is not JSON.
    let q = form(&co.sign("GET", co.common("DescribeRegins")));
    co.send("GET", "/redis/", &q, Body::Raw(b"not json".to_vec(), None))
        .await
        .ok("GET with a non-JSON body");

    // Both paths, both methods.
    for path in ["/redis", "/redis/"] {
        let q = form(&co.sign("GET", co.common("DescribeRegins")));
        let v = co.send("GET", path, &q, Body::None).await.ok(path);
        assert!(v["Data"].is_array(), "{path}: {v}");
        let q = form(&co.sign("POST", co.common("DescribeDBInstances")));
        let v = co
            .send("POST", path, &q, Body::Raw(b"{}".to_vec(), None))
            .await
            .ok(path);
        assert_eq!(v["Data"], json!([]), "{path}: {v}");
    }

    // Characters that need encoding (the V3 inputs), space as `+` and as `%20` on the wire,
    // and a signed empty value (a filter that is empty filters nothing).
    let tricky = [("InstanceName", "my redis/测试*~'"), ("IP", "10.240.17.13")];
    let mut pairs = co.common("DescribeDBInstances");
    pairs.extend(owned(&tricky));
    let q = form(&co.sign("GET", pairs));
    assert!(q.contains("my+redis"), "{q}");
    let v = co
        .send("GET", "/redis/", &q, Body::None)
        .await
        .ok("space as +");
    assert_eq!(v["Data"], json!([]));
    let mut pairs = co.common("DescribeDBInstances");
    pairs.extend(owned(&tricky));
    let q = form(&co.sign("GET", pairs)).replace('+', "%20");
    co.send("GET", "/redis/", &q, Body::None)
        .await
        .ok("space as %20");

    // cds-python-sdk: POST with the business parameters signed in the query (as text) AND
    // in the JSON body.
    let body = create_body("py-sdk", json!({ "Amount": 1 }));
    let mut pairs = co.common("CreateDBInstance");
    for (k, v) in body.as_object().unwrap() {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        pairs.push((k.clone(), text));
    }
    let q = form(&co.sign("POST", pairs));
    assert!(q.contains("PaasGoodsId=70001"), "{q}");
    let v = co
        .send(
            "POST",
            "/redis/",
            &q,
            Body::Raw(body.to_string().into_bytes(), Some("application/json")),
        )
        .await
        .ok("cds-python-sdk CreateDBInstance");
    let (py_ids, _) = ids_of(&v);
    assert_eq!(py_ids.len(), 1, "{v}");

    // The doc samples: PaasGoodsId as a numeric string in the JSON body, posted on `/redis`.
    let q = form(&co.sign("POST", co.common("CreateDBInstance")));
    let body = create_body("doc-sample", json!({ "PaasGoodsId": "70001" }));
    let v = co
        .send(
            "POST",
            "/redis",
            &q,
            Body::Raw(body.to_string().into_bytes(), Some("application/json")),
        )
        .await
        .ok("PaasGoodsId as a string");
    let (doc_ids, _) = ids_of(&v);
    assert_eq!(doc_ids.len(), 1, "{v}");

    for (id, name) in [(&py_ids[0], "py-sdk"), (&doc_ids[0], "doc-sample")] {
        let inst = co.wait_status(id, "RUNNING").await;
        assert_eq!(inst["InstanceName"], name, "{inst}");
        assert_eq!(inst["Ram"], json!(1024), "{inst}");
    }
    // The signed empty TagName filters nothing.
    let v = co
        .get("DescribeDBInstances", &[("TagName", ""), ("IP", "")])
        .await
        .ok("empty filters");
    assert_eq!(v["Data"].as_array().unwrap().len(), 2, "{v}");
}

// ------------------------------------------------------------------------------ 3. authentication

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_refusals() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let regions = [("RegionId", REGION)];

    /// A DescribeAvailableDBConfig GET with its pairs bent by `bend` before signing, signed
    /// with `key`.
    async fn bent(co: &Co, key: &str, bend: impl FnOnce(&mut Vec<(String, String)>)) -> Resp {
        let mut pairs = co.common("DescribeAvailableDBConfig");
        pairs.push(("RegionId".into(), REGION.into()));
        bend(&mut pairs);
        let sig = signature("GET", &pairs, key);
        pairs.push(("Signature".into(), sig));
        co.send("GET", "/redis/", &form(&pairs), Body::None).await
    }
    fn set(pairs: &mut [(String, String)], name: &str, value: &str) {
        pairs.iter_mut().find(|(k, _)| k == name).unwrap().1 = value.to_string();
    }

    // The good request passes.
    co.get("DescribeAvailableDBConfig", &regions)
        .await
        .ok("well signed");

    co.with_keys(&co.access_key, &format!("{}x", co.secret))
        .get("DescribeAvailableDBConfig", &regions)
        .await
        .refused(401, "SignatureDoesNotMatch", "wrong secret");
    bent(&co, &format!("{}&", co.secret), |_| {}).await.refused(
        401,
        "SignatureDoesNotMatch",
        "key + &",
    );
    co.with_keys("AKIDnoSuchAccessKey0000000000000000", &co.secret)
        .get("DescribeAvailableDBConfig", &regions)
        .await
        .refused(401, "InvalidAccessKeyId", "unknown AccessKeyId");

    // A value altered after signing.
    let mut pairs = co.common("DescribeAvailableDBConfig");
    pairs.push(("RegionId".into(), REGION.into()));
    let mut signed = co.sign("GET", pairs);
    set(&mut signed, "RegionId", "CN_Shanghai_A");
    co.send("GET", "/redis/", &form(&signed), Body::None)
        .await
        .refused(401, "SignatureDoesNotMatch", "value altered");
    // A parameter added after signing (before Signature, so it is the first occurrence).
    let mut signed = co.sign("GET", co.common("DescribeDBInstances"));
    signed.insert(0, ("InstanceName".into(), "x".into()));
    co.send("GET", "/redis/", &form(&signed), Body::None)
        .await
        .refused(401, "SignatureDoesNotMatch", "parameter added");
    // Signed for GET, sent as POST.
    let q = form(&co.sign("GET", co.common("DescribeRegins")));
    co.send("POST", "/redis/", &q, Body::None).await.refused(
        401,
        "SignatureDoesNotMatch",
        "method changed",
    );

    // Nonce reuse: the second use is refused; a badly signed request burns no nonce.
    let nonce_pairs = {
        let mut p = co.common("DescribeRegins");
        set(&mut p, "SignatureNonce", &nonce());
        p
    };
    let mut forged = nonce_pairs.clone();
    forged.push(("Signature".into(), signature("GET", &nonce_pairs, "bad")));
    co.send("GET", "/redis/", &form(&forged), Body::None)
        .await
        .refused(401, "SignatureDoesNotMatch", "forged");
    let good = form(&co.sign("GET", nonce_pairs));
    co.send("GET", "/redis/", &good, Body::None)
        .await
        .ok("first use of the nonce");
    co.send("GET", "/redis/", &good, Body::None).await.refused(
        401,
        "SignatureNonceUsed",
        "replayed",
    );
    // The same nonce under a fresh timestamp and signature is still a reuse.
    let old_nonce = form_urlencoded::parse(good.as_bytes())
        .find(|(k, _)| k == "SignatureNonce")
        .unwrap()
        .1
        .into_owned();
    bent(&co, &co.secret, |p| set(p, "SignatureNonce", &old_nonce))
        .await
        .refused(401, "SignatureNonceUsed", "nonce reused");

    // A nonce is any text: one that happens to hold the word "Timestamp" is still a nonce.
    let wordy = format!("Timestamp-{}", nonce());
    bent(&co, &co.secret, |p| set(p, "SignatureNonce", &wordy))
        .await
        .ok("a wordy nonce");
    bent(&co, &co.secret, |p| set(p, "SignatureNonce", &wordy))
        .await
        .refused(401, "SignatureNonceUsed", "a wordy nonce reused");

    // The Timestamp window is 300 s of crsd's clock, both ways.
    let ten_min_ago = co.timestamp(-600);
    bent(&co, &co.secret, |p| set(p, "Timestamp", &ten_min_ago))
        .await
        .refused(401, "InvalidTimeStamp.Expired", "10 min old");
    let ahead = co.timestamp(600);
    bent(&co, &co.secret, |p| set(p, "Timestamp", &ahead))
        .await
        .refused(401, "InvalidTimeStamp.Expired", "10 min ahead");
    let recent = co.timestamp(-200);
    bent(&co, &co.secret, |p| set(p, "Timestamp", &recent))
        .await
        .ok("200 s old");
    // crsd reads the harness clock: a day later, real-time stamps are stale and the
    // shifted clock's are good.
    let real_now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    crsd.clock.advance(chrono::Duration::days(1));
    bent(&co, &co.secret, |p| set(p, "Timestamp", &real_now))
        .await
        .refused(401, "InvalidTimeStamp.Expired", "real time after a shift");
    co.get("DescribeAvailableDBConfig", &regions)
        .await
        .ok("the shifted clock's time");
    bent(&co, &co.secret, |p| {
        set(p, "Timestamp", "2024-01-02 03:04:05")
    })
    .await
    .refused(400, "InvalidParameter", "malformed Timestamp");

    // Missing or unsupported common parameters.
    let q = form(&co.common("DescribeRegins"));
    let msg =
        co.send("GET", "/redis/", &q, Body::None)
            .await
            .refused(400, "ArgMissing", "no Signature");
    assert!(msg.contains("Signature"), "{msg}");
    for name in ["Action", "AccessKeyId", "SignatureNonce", "Timestamp"] {
        let mut pairs = co.common("DescribeRegins");
        pairs.retain(|(k, _)| k != name);
        let q = form(&co.sign("GET", pairs));
        let msg = co
            .send("GET", "/redis/", &q, Body::None)
            .await
            .refused(400, "ArgMissing", name);
        assert!(msg.contains(name), "{name}: {msg}");
    }
    // cds-gic-sdk-go's `HmacSHA256`: the same string signed with HMAC-SHA256 passes; an
    // HMAC-SHA1 signature under that name does not.
    let mut pairs = co.common("DescribeAvailableDBConfig");
    pairs.push(("RegionId".into(), REGION.into()));
    set(&mut pairs, "SignatureMethod", "HmacSHA256");
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(co.secret.as_bytes()).unwrap();
    m.update(string_to_sign("GET", &pairs).as_bytes());
    let sig = base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes());
    pairs.push(("Signature".into(), sig));
    co.send("GET", "/redis/", &form(&pairs), Body::None)
        .await
        .ok("HmacSHA256 signed with HMAC-SHA256");
    bent(&co, &co.secret, |p| set(p, "SignatureMethod", "HmacSHA256"))
        .await
        .refused(
            401,
            "SignatureDoesNotMatch",
            "HmacSHA256 named, HMAC-SHA1 signed",
        );
    for (name, value) in [
        ("SignatureMethod", "HMAC-SHA256"),
        ("SignatureVersion", "2.0"),
        ("Version", "2018-04-12"),
    ] {
        let msg = bent(&co, &co.secret, |p| set(p, name, value))
            .await
            .refused(400, "InvalidParameter", &format!("{name}={value}"));
        assert!(msg.contains(name), "{name}: {msg}");
    }

    // Nothing of that broke the account.
    co.get("DescribeAvailableDBConfig", &regions)
        .await
        .ok("still fine");
}

// ------------------------------------------------------------------------------ 4. bad input

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_and_changes_nothing() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let app = main_app_id(&crsd);
    let start_balance = balance(&crsd, app).await;
    let (lo, hi) = (
        crsd.config.instances.port_min,
        crsd.config.instances.port_max,
    );

    // Each required field: absent, null (the Go SDK) and empty.
    for field in [
        "RegionId",
        "VdcId",
        "BasePipeId",
        "InstanceName",
        "PaasGoodsId",
        "Password",
    ] {
        let mut body = create_body("bad-input", json!({}));
        body.as_object_mut().unwrap().remove(field);
        let msg = co.post("CreateDBInstance", body).await.refused(
            400,
            "ArgMissing",
            &format!("without {field}"),
        );
        assert!(msg.contains(field), "{field}: {msg}");
        let raw = create_body("bad-input", json!({ field: null })).to_string();
        let msg = co.post_go("CreateDBInstance", &raw).await.refused(
            400,
            "ArgMissing",
            &format!("{field} null"),
        );
        assert!(msg.contains(field), "{field}: {msg}");
        if field != "PaasGoodsId" {
            let body = create_body("bad-input", json!({ field: "" }));
            let msg = co.post("CreateDBInstance", body).await.refused(
                400,
                "ArgMissing",
                &format!("{field} empty"),
            );
            assert!(msg.contains(field), "{field}: {msg}");
        }
    }

    // Values out of the documented ranges.
    let outside = if lo > 1100 { lo - 1 } else { hi + 1 };
    let bad: Vec<(Value, &str)> = vec![
        (json!({ "Amount": 4 }), "Amount"),
        (json!({ "Amount": 0 }), "Amount"),
        (json!({ "Amount": "two" }), "Amount"),
        (json!({ "PaasGoodsId": 12345 }), "PaasGoodsId"),
        (json!({ "PaasGoodsId": 70000 }), "PaasGoodsId"),
        (json!({ "PaasGoodsId": 70999 }), "PaasGoodsId"),
        (json!({ "PaasGoodsId": "abc" }), "PaasGoodsId"),
        (json!({ "PaasGoodsId": i64::MAX }), "PaasGoodsId"),
        (json!({ "PaasGoodsId": i64::MIN }), "PaasGoodsId"),
        (json!({ "PaasGoodsId": -1 }), "PaasGoodsId"),
        (json!({ "RegionId": "CN_Nowhere_A" }), "RegionId"),
        (json!({ "ServicePort": 9100 }), "ServicePort"),
        (json!({ "ServicePort": 16379 }), "ServicePort"),
        (json!({ "ServicePort": 80 }), "ServicePort"),
        (json!({ "ServicePort": 70000 }), "ServicePort"),
        (json!({ "ServicePort": outside }), "ServicePort"),
        (json!({ "Password": "short1!" }), "password"),
        (json!({ "Password": "onlylowercase" }), "password"),
        (json!({ "InstanceName": "bad name!" }), "name"),
    ];
    for (extra, field) in bad {
        let what = extra.to_string();
        let msg = co
            .post("CreateDBInstance", create_body("bad-input", extra))
            .await
            .refused(400, "InvalidParameter", &what);
        assert!(
            msg.to_lowercase().contains(&field.to_lowercase()),
            "{what}: {msg}"
        );
    }
    // A POST body that is not a JSON object.
    let q = form(&co.sign("POST", co.common("CreateDBInstance")));
    co.send(
        "POST",
        "/redis/",
        &q,
        Body::Raw(b"RegionId=CN_Guangzhou_A".to_vec(), None),
    )
    .await
    .refused(400, "InvalidParameter", "a body that is not JSON");
    assert_eq!(balance(&crsd, app).await, start_balance, "nothing charged");
    assert_eq!(co.instances(&[]).await, Vec::<Value>::new());
    let v = crsd
        .client()
        .ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    assert_eq!(v["totalCount"], 0, "{v}");

    // Too little money: 500 CreateOrderExcept, nothing charged or listed.
    let (poor, poor_app) = other_account(&crsd, 0).await;
    let poor = co.with_keys(&poor.secret_id, &poor.secret_key);
    poor.post("CreateDBInstance", create_body("poor", json!({})))
        .await
        .refused(500, "CreateOrderExcept", "balance 0");
    assert_eq!(balance(&crsd, poor_app).await, 0);
    assert_eq!(poor.instances(&[]).await, Vec::<Value>::new());
    assert_eq!(balance(&crsd, app).await, start_balance);

    // Unknown action; unknown or missing ids.
    co.get("DescribeRedis", &[])
        .await
        .refused(400, "InvalidParameter", "unknown action");
    co.get("DescribeAvailableDBConfig", &[]).await.refused(
        400,
        "ArgMissing",
        "DescribeAvailableDBConfig without RegionId",
    );
    co.get("DescribeAvailableDBConfig", &[("RegionId", "CN_Nowhere_A")])
        .await
        .refused(400, "InvalidParameter", "unknown RegionId");
    let ghost = "crs-nosuch01";
    let id_calls = |id: &str, backup: &str| {
        let (id, backup) = (id.to_string(), backup.to_string());
        vec![
            ("GET", "DescribeBackups", json!({ "InstanceUuid": id })),
            (
                "GET",
                "DownloadBackup",
                json!({ "InstanceUuid": id, "BackupId": backup }),
            ),
            ("POST", "CreateBackup", json!({ "InstanceUuid": id })),
            (
                "POST",
                "DeleteBackup",
                json!({ "InstanceUuid": id, "BackupId": backup }),
            ),
            ("POST", "DeleteDBInstance", json!({ "InstanceUuid": id })),
        ]
    };
    async fn call(co: &Co, method: &str, action: &str, params: &Value) -> Resp {
        if method == "POST" {
            return co.post(action, params.clone()).await;
        }
        let pairs: Vec<(&str, &str)> = params
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        co.get(action, &pairs).await
    }
    for (method, action, params) in id_calls(ghost, "bak-nosuch01") {
        call(&co, method, action, &params).await.refused(
            404,
            "ResourceNotFound",
            &format!("{action} {params}"),
        );
        let msg = call(&co, method, action, &json!({})).await.refused(
            400,
            "ArgMissing",
            &format!("{action} without InstanceUuid"),
        );
        assert!(msg.contains("InstanceUuid"), "{action}: {msg}");
    }

    // Another account's instance and backup do not exist for the caller.
    let inst = co.create_running("mine").await;
    let id = id_of(&inst);
    co.post(
        "CreateBackup",
        json!({ "InstanceUuid": id, "Desc": "mine" }),
    )
    .await
    .ok("CreateBackup");
    let backup_id = co.wait_backups_finished(&id, 1).await[0]["BackupId"]
        .as_str()
        .unwrap()
        .to_string();
    let (other, _) = other_account(&crsd, 100_000_000).await;
    let other = co.with_keys(&other.secret_id, &other.secret_key);
    for (method, action, params) in id_calls(&id, &backup_id) {
        call(&other, method, action, &params).await.refused(
            404,
            "ResourceNotFound",
            &format!("another account's {action}"),
        );
    }
    assert_eq!(other.instances(&[]).await, Vec::<Value>::new());
    assert_eq!(
        other.instances(&[("InstanceUuid", &id)]).await,
        Vec::<Value>::new()
    );
    // An unknown backup of one's own instance; a missing BackupId.
    for action in ["DownloadBackup", "DeleteBackup"] {
        let method = if action == "DownloadBackup" {
            "GET"
        } else {
            "POST"
        };
        call(
            &co,
            method,
            action,
            &json!({ "InstanceUuid": id, "BackupId": "bak-nosuch01" }),
        )
        .await
        .refused(404, "ResourceNotFound", &format!("{action} unknown backup"));
        let msg = call(&co, method, action, &json!({ "InstanceUuid": id }))
            .await
            .refused(400, "ArgMissing", &format!("{action} without BackupId"));
        assert!(msg.contains("BackupId"), "{action}: {msg}");
    }
    co.post(
        "CreateBackup",
        json!({ "InstanceUuid": id, "BackupType": "incremental" }),
    )
    .await
    .refused(400, "InvalidParameter", "BackupType");
    // All of it left the instance and its backup as they were.
    let now = co.instance(&id).await.expect("still listed");
    assert_eq!(now["Status"], "RUNNING", "{now}");
    let list = co.backups(&id).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["BackupId"], backup_id.as_str());
    assert!(backup_file(&crsd, &id, &backup_id).is_file());
}

// ------------------------------------------------------------------------------ 5. conflicts

/// The task runner is stopped (the harness's `stop_loops`), so a task that was accepted
/// holds its locks for as long as the test needs: no race with the task's speed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_on_held_instances_and_backups_are_resource_in_use() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let inst = co.create_running("held").await;
    let id = id_of(&inst);
    set_get("127.0.0.1", port_of(&inst), "k", "v").await;
    co.post(
        "CreateBackup",
        json!({ "InstanceUuid": id, "Desc": "to restore" }),
    )
    .await
    .ok("CreateBackup");
    let backup_id = co.wait_backups_finished(&id, 1).await[0]["BackupId"]
        .as_str()
        .unwrap()
        .to_string();
    let file = backup_file(&crsd, &id, &backup_id);
    assert!(file.is_file());

    // From here on no task runs.
    crsd.running.as_ref().unwrap().stop_loops();
    tokio::time::sleep(Duration::from_millis(600)).await;

    // A v2 RestoreInstance holds the instance and the backup.
    let v = crsd
        .client()
        .ok(
            "RestoreInstance",
            &[
                ("redisId", &id),
                ("password", PASSWORD),
                ("backupId", &backup_id),
            ],
        )
        .await;
    assert!(v["data"]["requestId"].as_i64().is_some(), "{v}");
    let now = co.instance(&id).await.unwrap();
    assert_eq!(
        (now["Status"].as_str(), now["StatusStr"].as_str()),
        (Some("RESTORING"), Some("恢复中")),
        "{now}"
    );
    let list = co.backups(&id).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["Status"], "restoring", "{list:?}");

    co.post(
        "DeleteBackup",
        json!({ "InstanceUuid": id, "BackupId": backup_id }),
    )
    .await
    .refused(
        409,
        "ResourceInUse",
        "DeleteBackup of the backup being restored",
    );
    co.post("DeleteDBInstance", json!({ "InstanceUuid": id }))
        .await
        .refused(409, "ResourceInUse", "DeleteDBInstance while restoring");
    co.post("CreateBackup", json!({ "InstanceUuid": id }))
        .await
        .refused(409, "ResourceInUse", "CreateBackup while restoring");
    let list = co.backups(&id).await;
    assert_eq!(list.len(), 1, "still listed: {list:?}");
    assert_eq!(list[0]["BackupId"], backup_id.as_str());
    assert!(file.is_file(), "{file:?} still on disk");
    assert_eq!(co.instance(&id).await.unwrap()["Status"], "RESTORING");

    // An instance still being created (its creation task never runs here).
    let (ids, _) = co.create("creating", json!({})).await;
    let new = &ids[0];
    let listed = co.instance(new).await.expect("listed while creating");
    assert_eq!(
        (listed["Status"].as_str(), listed["StatusStr"].as_str()),
        (Some("CREATING"), Some("创建中")),
        "{listed}"
    );
    co.post("DeleteDBInstance", json!({ "InstanceUuid": new }))
        .await
        .refused(409, "ResourceInUse", "DeleteDBInstance while creating");
    co.post("CreateBackup", json!({ "InstanceUuid": new }))
        .await
        .refused(409, "ResourceInUse", "CreateBackup while creating");
    assert_eq!(co.backups(new).await, Vec::<Value>::new());
    assert_eq!(co.instance(new).await.unwrap()["Status"], "CREATING");
}

// ------------------------------------------------------------------------------ 6. cross-dialect

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_instance_and_its_backups_through_both_dialects() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let c = crsd.client();
    let (ids, _) = co
        .create(
            "跨方言-1",
            json!({ "VdcId": "vdc-cross", "BasePipeId": "pipe-cross" }),
        )
        .await;
    let id = ids[0].clone();
    let inst = co.wait_status(&id, "RUNNING").await;

    let (total, row) = v2_describe(&crsd, &id).await;
    assert_eq!(total, 1);
    assert_eq!(row["redisId"], id.as_str(), "{row}");
    assert_eq!(row["redisName"], "跨方言-1", "{row}");
    assert_eq!(row["port"], inst["Port"], "{row}");
    assert_eq!(row["wanIp"], inst["IP"], "{row}");
    assert_eq!(row["size"], json!(1024), "{row}");
    assert_eq!(row["unVpcId"], "vdc-cross", "{row}");
    assert_eq!(row["unSubnetId"], "pipe-cross", "{row}");
    assert_eq!(row["status"], 2, "running: {row}");
    set_get("127.0.0.1", port_of(&inst), "cross", "1").await;

    // A v2 backup, seen and downloaded here.
    let v = c
        .ok(
            "ManualBackupInstance",
            &[("redisId", &id), ("remark", "v2 备份")],
        )
        .await;
    let task = v["data"]["requestId"].as_i64().unwrap();
    assert_eq!(c.wait_task(task).await, 2);
    let l = c
        .ok(
            "GetRedisBackupList",
            &[("redisId", &id), ("limit", "10"), ("offset", "0")],
        )
        .await;
    let v2_backup = l["data"]["redisBackupSet"][0]["backupId"]
        .as_str()
        .unwrap()
        .to_string();
    let list = co.wait_backups_finished(&id, 1).await;
    assert_eq!(list[0]["BackupId"], v2_backup.as_str(), "{list:?}");
    assert_eq!(list[0]["Desc"], "v2 备份", "{list:?}");
    assert_eq!(list[0]["BackupMode"], "manual", "{list:?}");
    let size = list[0]["BackupSize"].as_u64().unwrap();

    let v = co
        .get(
            "DownloadBackup",
            &[("InstanceUuid", &id), ("BackupId", &v2_backup)],
        )
        .await
        .ok("DownloadBackup");
    let (status, here) = fetch(v["Data"]["BackupDownloadUrl"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(here.len() as u64, size);
    let v = c
        .ok(
            "GetBackupDownloadUrl",
            &[("redisId", &id), ("backupId", &v2_backup)],
        )
        .await;
    let (status, there) = fetch(v["data"]["intranet"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(sha256_hex(&here), sha256_hex(&there), "the same file");
    let rec = service(&crsd)
        .store()
        .backup(&v2_backup)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sha256_hex(&here), rec.sha256, "the recorded SHA-256");

    // A backup made here, seen by v2 with its remark.
    co.post(
        "CreateBackup",
        json!({ "InstanceUuid": id, "Desc": "co 备份" }),
    )
    .await
    .ok("CreateBackup");
    let list = co.wait_backups_finished(&id, 2).await;
    let co_backup = list
        .iter()
        .find(|b| b["BackupId"] != v2_backup.as_str())
        .unwrap()["BackupId"]
        .as_str()
        .unwrap()
        .to_string();
    let l = c
        .ok(
            "GetRedisBackupList",
            &[("redisId", &id), ("limit", "10"), ("offset", "0")],
        )
        .await;
    let seen = l["data"]["redisBackupSet"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backupId"] == co_backup.as_str())
        .unwrap_or_else(|| panic!("{co_backup} in {l}"))
        .clone();
    assert_eq!(seen["remark"], "co 备份", "{seen}");
    assert_eq!(seen["status"], 2, "{seen}");
}

// ------------------------------------------------------------------------------ 7. ports, Amount

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_port_and_amount() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let app = main_app_id(&crsd);
    let (lo, hi) = (
        crsd.config.instances.port_min,
        crsd.config.instances.port_max,
    );
    // A port of the range nothing listens on now (other programs may hold some), from the
    // top, away from where the allocator starts.
    let chosen = (lo..hi)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in the range");
    let b0 = balance(&crsd, app).await;

    // A port inside the operator's range is honoured.
    let (ids, _) = co
        .create("chosen-port", json!({ "ServicePort": chosen }))
        .await;
    let inst = co.wait_status(&ids[0], "RUNNING").await;
    assert_eq!(port_of(&inst), chosen, "{inst}");
    set_get("127.0.0.1", chosen, "port", "chosen").await;
    let b1 = balance(&crsd, app).await;
    // Whatever a 1 GB order costs up front (pay as you go may charge nothing yet).
    let one = b0 - b1;
    assert!(one >= 0);

    // Taken now: refused, nothing charged.
    let msg = co
        .post(
            "CreateDBInstance",
            create_body("same-port", json!({ "ServicePort": chosen })),
        )
        .await
        .refused(400, "InvalidParameter", "a port in use");
    assert!(msg.contains("ServicePort"), "{msg}");
    // A chosen port is for one instance at a time.
    co.post(
        "CreateDBInstance",
        create_body("two-on-one", json!({ "ServicePort": hi - 5, "Amount": 2 })),
    )
    .await
    .refused(400, "InvalidParameter", "Amount 2 on one port");
    assert_eq!(balance(&crsd, app).await, b1);

    // 9736, the documented default, means any free port of the range.
    let (ids, _) = co
        .create("default-port", json!({ "ServicePort": 9736 }))
        .await;
    let inst = co.wait_status(&ids[0], "RUNNING").await;
    let port = port_of(&inst);
    assert!((lo..=hi).contains(&port) && port != chosen, "{port}");
    set_get("127.0.0.1", port, "port", "default").await;
    let b2 = balance(&crsd, app).await;
    assert_eq!(b1 - b2, one);

    // Amount 2: two instances, both running, on their own ports, paid twice.
    let (ids, _) = co.create("pair", json!({ "Amount": 2 })).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);
    let mut ports = vec![chosen, port];
    for id in &ids {
        let inst = co.wait_status(id, "RUNNING").await;
        assert_eq!(inst["InstanceName"], "pair", "{inst}");
        let p = port_of(&inst);
        assert!(!ports.contains(&p), "{p} is its own");
        ports.push(p);
        set_get("127.0.0.1", p, "pair", id).await;
    }
    assert_eq!(b2 - balance(&crsd, app).await, 2 * one);
    assert_eq!(co.instances(&[]).await.len(), 4);
}

// ------------------------------------------------------------------------------ 8. filters

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_db_instances_filters() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let alpha = id_of(&co.create_running("alpha-cache").await);
    let beta = id_of(&co.create_running("beta-store").await);

    let ids = |list: Vec<Value>| -> Vec<String> {
        let mut v: Vec<String> = list.iter().map(id_of).collect();
        v.sort();
        v
    };
    let mut both = vec![alpha.clone(), beta.clone()];
    both.sort();

    assert_eq!(ids(co.instances(&[]).await), both);
    assert_eq!(
        ids(co.instances(&[("InstanceName", "cache")]).await),
        vec![alpha.clone()]
    );
    assert_eq!(
        ids(co.instances(&[("InstanceName", "beta-store")]).await),
        vec![beta.clone()]
    );
    assert_eq!(ids(co.instances(&[("InstanceName", "-")]).await), both);
    assert_eq!(
        ids(co.instances(&[("InstanceName", "gamma")]).await),
        Vec::<String>::new()
    );
    assert_eq!(ids(co.instances(&[("IP", "127.0")]).await), both);
    assert_eq!(ids(co.instances(&[("IP", "127.0.0.1")]).await), both);
    assert_eq!(
        ids(co.instances(&[("IP", "10.99")]).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(co.instances(&[("TagName", "prod")]).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(co.instances(&[("InstanceUuid", &alpha)]).await),
        vec![alpha.clone()]
    );
    // Exact, not a substring.
    assert_eq!(
        ids(co
            .instances(&[("InstanceUuid", &alpha[..alpha.len() - 1])])
            .await),
        Vec::<String>::new()
    );
    // Filters combine.
    assert_eq!(
        ids(co
            .instances(&[("InstanceName", "store"), ("IP", "127.0")])
            .await),
        vec![beta.clone()]
    );
    assert_eq!(
        ids(co
            .instances(&[("InstanceUuid", &alpha), ("InstanceName", "store")])
            .await),
        Vec::<String>::new()
    );
}

// ------------------------------------------------------------------------------ faults

/// kill -9 of crsd (the real binary) right after DeleteDBInstance was accepted: after the
/// restart the delete task ends the job. Both redis-servers are gone, their ports answer
/// nothing, the instance folder is removed and no dialect lists the instance; the account's
/// other instance keeps serving its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_interrupted_by_kill9_finishes_after_restart() {
    const SECRET_ID: &str = "AKIDcoFaultTest000000000000000000001";
    const SECRET_KEY: &str = "coFaultTestSecretKey0000000000001";
    let dir = tempfile::tempdir().unwrap();
    let mut d = common::daemon::Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let co = Co {
        base: format!("http://127.0.0.1:{}", d.port),
        access_key: SECRET_ID.into(),
        secret: SECRET_KEY.into(),
        clock: Arc::new(OffsetClock::new()),
        http: reqwest::Client::new(),
    };
    let gone = co.create_running("gone").await;
    let kept = co.create_running("kept").await;
    let (host, kept_port) = (kept["IP"].as_str().unwrap().to_string(), port_of(&kept));
    set_get(&host, kept_port, "survivor", "yes").await;
    let id = id_of(&gone);
    let folder = d.data.join("instances").join(&id);
    assert!(folder.is_dir());
    // The nodes' own ports (the address's port may serve a spare frontend once freed).
    let ports: Vec<u16> = (0..2)
        .map(|seq| {
            std::fs::read_to_string(folder.join(format!("{id}-{seq}")).join("redis.conf"))
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("port "))
                .and_then(|p| p.trim().parse().ok())
                .expect("a port line")
        })
        .collect();

    // A stopped (SIGSTOP) replica holds the delete task in its first step: it answers no
    // SHUTDOWN, so the task is still running when crsd is killed.
    let replica_pid: i32 =
        std::fs::read_to_string(folder.join(format!("{id}-1")).join("redis.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    assert_eq!(unsafe { libc::kill(replica_pid, libc::SIGSTOP) }, 0);
    let r = co
        .post("DeleteDBInstance", json!({ "InstanceUuid": id }))
        .await
        .ok("DeleteDBInstance");
    assert!(!r["TaskId"].as_str().unwrap_or_default().is_empty(), "{r}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let during = co.instance(&id).await.expect("still listed while deleting");
    assert_eq!(during["Status"], "DELETING", "{during}");
    d.kill9();
    assert_eq!(unsafe { libc::kill(replica_pid, libc::SIGCONT) }, 0);
    d.start().await;

    co.wait_gone(&id).await;
    let v2 = d.client();
    let listed = v2
        .ok("DescribeRedis", &[("limit", "100"), ("offset", "0")])
        .await;
    let ids: Vec<&str> = listed["data"]["redisSet"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["redisId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id_of(&kept).as_str()], "{listed}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while ports.iter().any(|p| listening(*p)) || folder.exists() {
        assert!(
            Instant::now() < deadline,
            "ports {ports:?} or folder {} still there",
            folder.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = redis_conn(&host, kept_port, PASSWORD).await.unwrap();
    let v: Option<String> = redis::cmd("GET")
        .arg("survivor")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some("yes"));
}

/// The cluster architecture: listed with its totals, bought by one (`PaasGoodsId` 80003 =
/// 3 GB over 3 shards of 1 GB), described as the cluster edition; its backup is one file per
/// shard, each downloadable by `ShardId`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cluster_architecture_is_bought_by_its_total_memory() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let v = co
        .get("DescribeAvailableDBConfig", &[("RegionId", REGION)])
        .await
        .ok("DescribeAvailableDBConfig");
    let archs = v["Data"]["Products"][0]["Architectures"]
        .as_array()
        .expect("architectures");
    let cluster = archs
        .iter()
        .find(|a| a["ArchitectureName"] == "集群")
        .unwrap_or_else(|| panic!("a cluster architecture: {v}"));
    assert_eq!(cluster["ArchitectureType"], 2);
    let specs = cluster["ComputeRoles"][0]["Standards"]["CpuRam"]
        .as_array()
        .unwrap();
    let three = specs
        .iter()
        .find(|s| s["RAM"] == 3)
        .unwrap_or_else(|| panic!("a 3 GB cluster: {cluster}"));
    assert_eq!(three["PaasGoodsId"], 80003);

    let (ids, _) = co
        .create("co-cluster", json!({ "PaasGoodsId": 80003 }))
        .await;
    let inst = co.wait_status(&ids[0], "RUNNING").await;
    assert_eq!(inst["Ram"], json!(3072), "{inst}");
    assert_eq!(inst["SubProductName"], "Redis 集群版", "{inst}");
    let stored = service(&crsd)
        .store()
        .instance(&ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.shard_ids(), vec![0, 1, 2], "three shards");
    assert_eq!(stored.mem_mb, 1024, "of 1 GB each");

    co.post(
        "CreateBackup",
        json!({ "InstanceUuid": ids[0], "Desc": "cluster" }),
    )
    .await
    .ok("CreateBackup");
    let list = co.wait_backups_finished(&ids[0], 1).await;
    let backup_id = list[0]["BackupId"].as_str().unwrap().to_string();
    for shard in ["0", "2"] {
        let v = co
            .get(
                "DownloadBackup",
                &[
                    ("InstanceUuid", ids[0].as_str()),
                    ("BackupId", backup_id.as_str()),
                    ("ShardId", shard),
                ],
            )
            .await
            .ok("DownloadBackup");
        assert_eq!(v["Data"]["ShardId"], shard, "{v}");
        let (status, bytes) = fetch(v["Data"]["BackupDownloadUrl"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert!(bytes.starts_with(b"REDIS"), "shard {shard}'s RDB");
    }
}
