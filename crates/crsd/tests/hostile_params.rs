//! Hostile parameters, correctly signed, against a real crsd over HTTP in every dialect: a
//! name of 10,000 segments (it used to overflow the stack and abort crsd), a Timestamp that
//! wrapped into the replay window, filters of the wrong JSON type (they used to be ignored,
//! so a filtered listing showed everything), unbounded free text with control characters, and
//! an API 3.0 VPort that was silently ignored. Each refusal is the dialect's own
//! invalid-parameter answer, nothing changes, and crsd keeps answering afterwards.
//!
//! Requests are signed with crsd's own signers (`crsd_api::sign_*`): what is tested here is
//! what happens after the signature holds (tc3.rs, co.rs and v2_auth.rs test the signers
//! against independent ones).

mod common;

use common::{balance, main_app_id, service, TestCrsd, V2Client};
use crsd_api::sign_v2::SignatureMethod;
use crsd_api::{sign_co, sign_tc3, sign_v2};
use crsd_core::clock::Clock as _;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const PASSWORD: &str = "49A2d!e@f12e";

/// `A.A.A…`: 10,000 segments, about 20 KB.
fn deep_name() -> String {
    vec!["A"; 10_000].join(".")
}

static NONCE: AtomicU64 = AtomicU64::new(1);

fn nonce() -> u64 {
    NONCE.fetch_add(1, Ordering::SeqCst) + u64::from(std::process::id()) * 1_000_000 + 9_000_000_000
}

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

// ------------------------------------------------------------------------ API 3.0 client

struct Tc3 {
    url: String,
    host: String,
    secret_id: String,
    secret_key: String,
    crsd_now: Box<dyn Fn() -> i64 + Send + Sync>,
    http: reqwest::Client,
}

impl Tc3 {
    fn new(crsd: &TestCrsd) -> Tc3 {
        let clock = crsd.clock.clone();
        Tc3 {
            url: crsd.url.clone(),
            host: crsd.url.split("://").nth(1).unwrap().to_string(),
            secret_id: crsd.secret_id.clone(),
            secret_key: crsd.secret_key.clone(),
            crsd_now: Box::new(move || clock.now().timestamp()),
            http: reqwest::Client::new(),
        }
    }

    /// A TC3-HMAC-SHA256 request: GET with `query`, or POST with a JSON `body`.
    async fn tc3(&self, method: &str, action: &str, query: &str, body: &[u8]) -> Value {
        let timestamp = (self.crsd_now)();
        let content_type = if method == "GET" {
            "application/x-www-form-urlencoded"
        } else {
            "application/json"
        };
        let headers = vec![
            ("content-type".to_string(), content_type.to_string()),
            ("host".to_string(), self.host.clone()),
        ];
        let req = sign_tc3::Tc3Request {
            method,
            path: "/",
            query,
            headers: &headers,
            payload: body,
            timestamp,
        };
        let signed = ["content-type".to_string(), "host".to_string()];
        let canonical = sign_tc3::canonical_request(&req, &signed).unwrap();
        let date = sign_tc3::utc_date(timestamp).unwrap();
        let to_sign = sign_tc3::string_to_sign(timestamp, &date, "redis", &canonical);
        let signature = sign_tc3::signature(&self.secret_key, &date, "redis", &to_sign);
        let auth = format!(
            "TC3-HMAC-SHA256 Credential={}/{date}/redis/tc3_request, \
             SignedHeaders=content-type;host, Signature={signature}",
            self.secret_id
        );
        let url = if query.is_empty() {
            format!("{}/", self.url)
        } else {
            format!("{}/?{query}", self.url)
        };
        let builder = if method == "GET" {
            self.http.get(&url)
        } else {
            self.http.post(&url).body(body.to_vec())
        };
        let resp = builder
            .header("Host", &self.host)
            .header("Content-Type", content_type)
            .header("Authorization", auth)
            .header("X-TC-Action", action)
            .header("X-TC-Version", "2018-04-12")
            .header("X-TC-Timestamp", timestamp.to_string())
            .send()
            .await
            .expect("crsd answers");
        response3(resp).await
    }

    async fn post(&self, action: &str, body: Value) -> Value {
        self.tc3("POST", action, "", body.to_string().as_bytes())
            .await
    }

    /// The 3.0 old signature, POSTed as a form.
    async fn old_post(&self, action: &str, params: &[(&str, &str)]) -> Value {
        let mut pairs = owned(params);
        let common = [
            ("Action", action.to_string()),
            ("Nonce", nonce().to_string()),
            ("Timestamp", (self.crsd_now)().to_string()),
            ("Version", "2018-04-12".into()),
            ("Region", "ap-guangzhou".into()),
            ("SecretId", self.secret_id.clone()),
            ("SignatureMethod", "HmacSHA256".into()),
        ];
        pairs.extend(common.into_iter().map(|(k, v)| (k.to_string(), v)));
        let msg = sign_tc3::old_string_to_sign("POST", &self.host, &pairs);
        let sig = sign_v2::sign(
            SignatureMethod::HmacSha256,
            self.secret_key.as_bytes(),
            &msg,
        );
        pairs.push(("Signature".into(), sig));
        let resp = self
            .http
            .post(format!("{}/", self.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form(&pairs))
            .send()
            .await
            .expect("crsd answers");
        response3(resp).await
    }
}

async fn response3(resp: reqwest::Response) -> Value {
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.expect("JSON");
    v["Response"].clone()
}

fn assert_code3(r: &Value, code: &str, what: &str) {
    assert_eq!(r["Error"]["Code"], code, "{what}: {r}");
}

// ------------------------------------------------------------------------ Capital Online

struct Co {
    url: String,
    access_key: String,
    secret: String,
    crsd: std::sync::Arc<crsd_core::clock::OffsetClock>,
    http: reqwest::Client,
}

impl Co {
    fn new(crsd: &TestCrsd) -> Co {
        Co {
            url: crsd.url.clone(),
            access_key: crsd.secret_id.clone(),
            secret: crsd.secret_key.clone(),
            crsd: crsd.clock.clone(),
            http: reqwest::Client::new(),
        }
    }

    /// The signed query: common parameters plus `params`.
    fn query(&self, method: &str, action: &str, params: &[(&str, &str)]) -> String {
        let ts = self.crsd.now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let mut pairs = owned(&[
            ("Action", action),
            ("AccessKeyId", &self.access_key),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", &format!("n-{}", nonce())),
            ("SignatureVersion", "1.0"),
            ("Timestamp", &ts),
            ("Version", "2019-08-08"),
        ]);
        pairs.extend(owned(params));
        let sig = sign_co::sign(&self.secret, &sign_co::string_to_sign(method, &pairs));
        pairs.push(("Signature".into(), sig));
        form(&pairs)
    }

    async fn get(&self, action: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let q = self.query("GET", action, params);
        let resp = self
            .http
            .get(format!("{}/redis/?{q}", self.url))
            .send()
            .await
            .expect("crsd answers");
        (resp.status().as_u16(), resp.json().await.expect("JSON"))
    }

    async fn post(&self, action: &str, body: &Value) -> (u16, Value) {
        let q = self.query("POST", action, &[]);
        let resp = self
            .http
            .post(format!("{}/redis/?{q}", self.url))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("crsd answers");
        (resp.status().as_u16(), resp.json().await.expect("JSON"))
    }
}

fn assert_co_invalid(answer: &(u16, Value), what: &str) {
    assert_eq!(
        (answer.0, answer.1["Code"].as_str()),
        (400, Some("InvalidParameter")),
        "{what}: {}",
        answer.1
    );
}

// ------------------------------------------------------------------------ state checks

/// The account's balance and how many instances it has (every dialect's listing reads the
/// same store).
async fn footprint(crsd: &TestCrsd) -> (i64, usize) {
    let app = main_app_id(crsd);
    let (_, list) = service(crsd)
        .describe(
            app,
            crsd_service::DescribeQuery {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (balance(crsd, app).await, list.len())
}

async fn v2_still_answers(c: &V2Client) {
    c.ok("DescribeRedis", &[("limit", "10")]).await;
}

// ------------------------------------------------------------------------ deep names

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_segment_name_is_refused_by_api3_and_crsd_keeps_answering() {
    let crsd = TestCrsd::start().await;
    let c = Tc3::new(&crsd);
    let before = footprint(&crsd).await;
    let deep = deep_name();

    // TC3 GET: the flattened query is folded.
    let query = form(&[(deep.clone(), "1".to_string())]);
    let r = c.tc3("GET", "DescribeInstances", &query, b"").await;
    assert_code3(&r, "InvalidParameterValue", "TC3 GET");
    assert!(
        r["Error"]["Message"].as_str().unwrap().len() < 300,
        "the name is not echoed whole: {r}"
    );
    // The old signature, POSTed as a form.
    let r = c.old_post("DescribeInstances", &[(&deep, "1")]).await;
    assert_code3(&r, "InvalidParameterValue", "old-signature POST");
    // Nine short segments: over the depth limit, not the length limit.
    let nine = ["Status"; 9].join(".");
    let r = c.old_post("DescribeInstances", &[(&nine, "1")]).await;
    assert_code3(&r, "InvalidParameterValue", "nine segments");
    assert!(
        r["Error"]["Message"].as_str().unwrap().contains("segments"),
        "{r}"
    );
    // A huge list index.
    let query = form(&owned(&[("Status.99999999999", "2")]));
    let r = c.tc3("GET", "DescribeInstances", &query, b"").await;
    assert_code3(&r, "InvalidParameterValue", "huge index");

    // Still alive, nothing changed, and a normal request works in both forms.
    let r = c.post("DescribeInstances", json!({ "Limit": 10 })).await;
    assert!(r.get("Error").is_none(), "{r}");
    let r = c.old_post("DescribeInstances", &[("Limit", "10")]).await;
    assert!(r.get("Error").is_none(), "{r}");
    assert_eq!(footprint(&crsd).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_segment_name_is_refused_by_capital_online_and_crsd_keeps_answering() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let before = footprint(&crsd).await;
    let deep = deep_name();

    let answer = co.get("DescribeDBInstances", &[(&deep, "1")]).await;
    assert_co_invalid(&answer, "GET with a deep name");
    let nine = ["InstanceName"; 9].join(".");
    let answer = co.get("DescribeDBInstances", &[(&nine, "x")]).await;
    assert_co_invalid(&answer, "nine segments");

    let (status, body) = co.get("DescribeDBInstances", &[]).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (200, Some("Success")),
        "{body}"
    );
    assert_eq!(footprint(&crsd).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ten_thousand_segment_name_is_refused_by_v2_and_crsd_keeps_answering() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let before = footprint(&crsd).await;
    for deep in [deep_name(), vec!["a"; 10_000].join("_")] {
        let v = c.call("DescribeRedis", &[(&deep, "1")]).await;
        assert_eq!(v["code"], 4000, "{v}");
        assert_eq!(v["codeDesc"], "InvalidParameter", "{v}");
        assert!(v["message"].as_str().unwrap().starts_with("(11201)"), "{v}");
    }
    let v = c
        .call("DescribeRedis", &[("redisIds.99999999999", "crs-1")])
        .await;
    assert_eq!(v["codeDesc"], "InvalidParameter", "{v}");
    v2_still_answers(&c).await;
    assert_eq!(footprint(&crsd).await, before);
}

// ------------------------------------------------------------------------ v2 Timestamp

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_timestamp_of_now_minus_2_pow_63_is_stale() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let now = crsd.clock.now().timestamp();
    for ts in [now + i64::MIN, i64::MIN, i64::MAX] {
        let mut pairs: Vec<(String, String)> = owned(&[
            ("Action", "DescribeRedis"),
            ("SecretId", &c.secret_id),
            ("Nonce", &nonce().to_string()),
            ("Timestamp", &ts.to_string()),
            ("SignatureMethod", "HmacSHA256"),
        ]);
        let sig = common::sign_v2("GET", &c.host, &pairs, &c.secret_key, true);
        pairs.push(("Signature".into(), sig));
        let v = c.send(&pairs).await;
        assert_eq!(v["code"], 4500, "Timestamp {ts}: {v}");
    }
    v2_still_answers(&c).await;
}

// ------------------------------------------------------------------------ wrong JSON types

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_of_the_wrong_json_type_are_refused_not_ignored() {
    let crsd = TestCrsd::start().await;
    let v2 = crsd.client();
    v2.create(PASSWORD, 1).await;
    let c = Tc3::new(&crsd);
    let co = Co::new(&crsd);
    let before = footprint(&crsd).await;
    assert_eq!(before.1, 1);

    // API 3.0: a list where a scalar belongs, an object where a list belongs, a scalar where a
    // list belongs; each used to be dropped, listing every instance.
    for body in [
        json!({ "InstanceId": ["crs-none0000"] }),
        json!({ "SearchKey": { "x": 1 } }),
        json!({ "ProjectIds": { "0": 5 } }),
        json!({ "ProjectIds": 5 }),
    ] {
        let r = c.post("DescribeInstances", body.clone()).await;
        assert_code3(&r, "InvalidParameterValue", &body.to_string());
    }
    let r = c
        .post(
            "DescribeInstanceDealDetail",
            json!({ "DealIds": { "0": "1" } }),
        )
        .await;
    assert_code3(&r, "InvalidParameterValue", "DealIds as an object");
    let r = c
        .post(
            "ModifyInstance",
            json!({ "Operation": "rename", "InstanceIds": "crs-none0000", "InstanceNames": ["x"] }),
        )
        .await;
    assert_code3(&r, "InvalidParameterValue", "InstanceIds as a string");

    // Capital Online (POST JSON): the same.
    for body in [
        json!({ "InstanceUuid": ["crs-none0000"] }),
        json!({ "InstanceName": { "x": 1 } }),
    ] {
        let answer = co.post("DescribeDBInstances", &body).await;
        assert_co_invalid(&answer, &body.to_string());
    }

    // The right types still filter.
    let r = c
        .post("DescribeInstances", json!({ "InstanceId": "crs-none0000" }))
        .await;
    assert_eq!(r["TotalCount"], 0, "{r}");
    assert_eq!(footprint(&crsd).await, before);
}

// ------------------------------------------------------------------------ free text

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capital_online_vdc_id_is_bounded_and_without_control_characters() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let before = footprint(&crsd).await;
    let create = |vdc: &str| {
        json!({
            "RegionId": "CN_Guangzhou_A",
            "VdcId": vdc,
            "BasePipeId": "pipe-1",
            "InstanceName": "hostile",
            "PaasGoodsId": 70001,
            "Password": "Passw0rd!",
        })
    };
    let huge = "v".repeat(100 * 1024);
    let over = "v".repeat(65);
    for (vdc, what) in [
        (huge.as_str(), "100 KB"),
        (over.as_str(), "65 characters"),
        ("vdc\u{1}1", "a control character"),
        ("vdc\n1", "a newline"),
    ] {
        let answer = co.post("CreateDBInstance", &create(vdc)).await;
        assert_co_invalid(&answer, what);
        if vdc.len() < 100 {
            let msg = answer.1["Message"].as_str().unwrap();
            assert!(msg.contains("VdcId"), "{what}: {msg}");
        }
    }
    let mut pipe = create("vdc-1");
    pipe["BasePipeId"] = json!("p".repeat(65));
    assert_co_invalid(&co.post("CreateDBInstance", &pipe).await, "BasePipeId");
    // Also in the query of a GET.
    let answer = co
        .get("DescribeDBInstances", &[("InstanceName", "a\u{7}b")])
        .await;
    assert_co_invalid(&answer, "a control character in a GET filter");
    assert_eq!(
        footprint(&crsd).await,
        before,
        "nothing charged, nothing made"
    );

    // A uuid-shaped VdcId, as the seed shows, is kept and shown.
    let vdc = "cacdf937-d484-435a-894b-241be9309d80";
    let (status, body) = co.post("CreateDBInstance", &create(vdc)).await;
    assert_eq!(
        (status, body["Code"].as_str()),
        (200, Some("Success")),
        "{body}"
    );
    let (_, list) = co.get("DescribeDBInstances", &[]).await;
    assert_eq!(list["Data"][0]["VdcId"], vdc, "{list}");
}

// ------------------------------------------------------------------------ VPort

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api3_vport_outside_what_can_be_served_is_refused() {
    let crsd = TestCrsd::start().await;
    let c = Tc3::new(&crsd);
    let before = footprint(&crsd).await;
    let create = |vport: Value| {
        json!({
            "TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1, "BillingMode": 1,
            "Password": PASSWORD, "VPort": vport,
        })
    };
    // Not a user port; or (instances share one address here) not a port of the range.
    for vport in [json!(80), json!(70000), json!("7000"), json!(1024)] {
        let r = c.post("CreateInstances", create(vport.clone())).await;
        assert_code3(&r, "InvalidParameterValue", &vport.to_string());
        let msg = r["Error"]["Message"].as_str().unwrap();
        assert!(msg.contains("VPort"), "{msg}");
    }
    let r = c.post("CreateInstances", create(json!({"a": 1}))).await;
    assert_code3(&r, "InvalidParameterValue", "VPort as an object");
    // Free text of the same purchase: bounded, named as the model names it.
    let mut vpc = create(json!(6379));
    vpc["VpcId"] = json!("v".repeat(65));
    let r = c.post("CreateInstances", vpc).await;
    assert_code3(&r, "InvalidParameterValue", "VpcId of 65 characters");
    assert!(
        r["Error"]["Message"].as_str().unwrap().contains("VpcId"),
        "{r}"
    );
    assert_eq!(
        footprint(&crsd).await,
        before,
        "nothing charged, nothing made"
    );

    // The default is what every instance gets: accepted.
    let r = c.post("CreateInstances", create(json!(6379))).await;
    assert!(r.get("Error").is_none(), "{r}");
    assert_eq!(r["InstanceIds"].as_array().unwrap().len(), 1, "{r}");
}

// ------------------------------------------------------------------------ backups of a deleted instance

/// The instance's status once no task holds it.
async fn settled(co: &Co, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, list) = co.get("DescribeDBInstances", &[("InstanceUuid", id)]).await;
        let status = list["Data"][0]["Status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if !["CREATING", "CHANGING", "DELETING"].contains(&status.as_str()) {
            return status;
        }
        assert!(Instant::now() < deadline, "{list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_the_backups_of_a_deleted_instance() {
    let crsd = TestCrsd::start().await;
    let co = Co::new(&crsd);
    let (status, body) = co
        .post(
            "CreateDBInstance",
            &json!({
                "RegionId": "CN_Guangzhou_A", "VdcId": "vdc-1", "BasePipeId": "pipe-1",
                "InstanceName": "doomed", "PaasGoodsId": 70001, "Password": "Passw0rd!",
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["Data"]["InstancesUuid"][0]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(settled(&co, &id).await, "RUNNING");
    let (status, body) = co
        .post("CreateBackup", &json!({ "InstanceUuid": id }))
        .await;
    assert_eq!(status, 200, "{body}");
    // The backup's record exists once its task is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    let backup_id = loop {
        let (_, backups) = co.get("DescribeBackups", &[("InstanceUuid", &id)]).await;
        if let Some(b) = backups["Data"][0]["BackupId"].as_str() {
            break b.to_string();
        }
        assert!(Instant::now() < deadline, "{backups}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(settled(&co, &id).await, "RUNNING");
    let file = crsd
        .data_dir()
        .join("backups")
        .join(&id)
        .join(format!("{backup_id}.rdb"));
    assert!(file.exists(), "{}", file.display());

    let (status, body) = co
        .post("DeleteDBInstance", &json!({ "InstanceUuid": id }))
        .await;
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while crsd.data_dir().join("instances").join(&id).exists() {
        assert!(Instant::now() < deadline, "the instance's folder stays");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        file.exists(),
        "the backup outlives its instance until retention"
    );

    // Past the retention the pass removes it like any other backup.
    let svc = service(&crsd);
    assert_eq!(svc.expire_backups_once().await.unwrap(), 0, "not yet");
    crsd.clock.advance(chrono::Duration::days(
        crsd.config.backups.retention_days as i64 + 1,
    ));
    assert_eq!(svc.expire_backups_once().await.unwrap(), 1);
    assert!(!file.exists(), "retention removed the file");
}
