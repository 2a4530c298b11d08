//! A small API 3.0 client for tests that need 3.0 actions against either harness (the
//! in-process crsd or the real binary): TC3-HMAC-SHA256 over a JSON POST, as
//! tencentcloud-sdk-python sends it, signed here from Tencent's documentation (independent of
//! `crsd_api::sign_tc3`). `tc3.rs` keeps its own signer, which also bends requests.

#![allow(dead_code)]

use super::V2Client;
use crsd_core::clock::OffsetClock;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const VERSION: &str = "2018-04-12";

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `Authorization` for a POST of `body` (`application/json`) to `/` at `host`.
pub fn authorization(
    secret_id: &str,
    secret_key: &str,
    host: &str,
    body: &[u8],
    ts: i64,
) -> String {
    authorization_for("redis", secret_id, secret_key, host, body, ts)
}

/// [`authorization`] with the credential scope naming `service` (`monitor` for Cloud
/// Monitor's GetMonitorData).
pub fn authorization_for(
    service: &str,
    secret_id: &str,
    secret_key: &str,
    host: &str,
    body: &[u8],
    ts: i64,
) -> String {
    let canonical = format!(
        "POST\n/\n\ncontent-type:application/json\nhost:{host}\n\ncontent-type;host\n{}",
        hex(&Sha256::digest(body))
    );
    let date = chrono::DateTime::from_timestamp(ts, 0)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string();
    let scope = format!("{date}/{service}/tc3_request");
    let to_sign = format!(
        "TC3-HMAC-SHA256\n{ts}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac256(format!("TC3{secret_key}").as_bytes(), date.as_bytes());
    let k_service = hmac256(&k_date, service.as_bytes());
    let k_signing = hmac256(&k_service, b"tc3_request");
    let signature = hex(&hmac256(&k_signing, to_sign.as_bytes()));
    format!(
        "TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders=content-type;host, \
         Signature={signature}"
    )
}

#[derive(Clone)]
pub struct Tc3 {
    pub url: String,
    pub host: String,
    pub secret_id: String,
    pub secret_key: String,
    pub clock: Arc<OffsetClock>,
    http: reqwest::Client,
    /// Signatures sent: crsd takes a change's signature once.
    used: Arc<Mutex<HashSet<String>>>,
    /// `X-TC-Region` (tccli's `--region`); none sent when empty.
    pub region: String,
}

impl Tc3 {
    /// Signs with the same account, clock and address as `v2`.
    pub fn like(v2: &V2Client) -> Tc3 {
        Tc3 {
            url: v2.url.clone(),
            host: v2.host.clone(),
            secret_id: v2.secret_id.clone(),
            secret_key: v2.secret_key.clone(),
            clock: v2.clock.clone(),
            http: reqwest::Client::new(),
            used: Default::default(),
            region: "ap-guangzhou".into(),
        }
    }

    /// The same client, sending `region` as `X-TC-Region` (empty: no region header).
    pub fn in_region(&self, region: &str) -> Tc3 {
        Tc3 {
            region: region.into(),
            ..self.clone()
        }
    }

    /// The `Response` object of `action` with `params`. A change is never signed twice alike
    /// (same body in the same second): it waits for the next second, as a script must.
    pub async fn call(&self, action: &str, params: Value) -> Value {
        self.call_in("redis", VERSION, action, params).await
    }

    /// [`Tc3::call`] for the API of `service` and `version` (Cloud Monitor: `monitor`,
    /// `2018-07-24`).
    pub async fn call_in(
        &self,
        service: &str,
        version: &str,
        action: &str,
        params: Value,
    ) -> Value {
        let reads = action.starts_with("Describe")
            || action.starts_with("InquiryPrice")
            || action == "GetMonitorData";
        let body = serde_json::to_vec(&params).unwrap();
        let (ts, auth) = loop {
            let ts = crsd_core::clock::Clock::now(&*self.clock).timestamp();
            let auth = authorization_for(
                service,
                &self.secret_id,
                &self.secret_key,
                &self.host,
                &body,
                ts,
            );
            // A read is recorded too: the action is not signed, so a change with the same
            // body in the same second would carry the read's signature.
            let fresh = self.used.lock().unwrap().insert(auth.clone());
            if reads || fresh {
                break (ts, auth);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let req = self
            .http
            .post(format!("{}/", self.url))
            .header("Host", &self.host)
            .header("Content-Type", "application/json")
            .header("Authorization", auth)
            .header("X-TC-Action", action)
            .header("X-TC-Timestamp", ts.to_string())
            .header("X-TC-Version", version)
            .body(body);
        let req = if self.region.is_empty() {
            req
        } else {
            req.header("X-TC-Region", &self.region)
        };
        let resp = req.send().await.expect("request reaches crsd");
        assert_eq!(resp.status(), 200, "3.0 always answers 200");
        let v: Value = resp.json().await.expect("a JSON body");
        v["Response"].clone()
    }

    /// Calls and asserts success.
    pub async fn ok(&self, action: &str, params: Value) -> Value {
        let r = self.call(action, params).await;
        assert!(r.get("Error").is_none(), "{action} failed: {r}");
        r
    }

    /// Calls and asserts the error code.
    pub async fn err(&self, action: &str, params: Value, code: &str) -> Value {
        let r = self.call(action, params).await;
        assert_eq!(r["Error"]["Code"], code, "{action}: {r}");
        r
    }

    /// DescribeTaskInfo until the task leaves preparing/running; its last Status.
    pub async fn wait_task(&self, task: i64) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.ok("DescribeTaskInfo", json!({ "TaskId": task })).await;
            let s = r["Status"].as_str().unwrap().to_string();
            if s != "preparing" && s != "running" {
                if s != "succeed" {
                    eprintln!("task {task} ended {s}: {r}");
                }
                return s;
            }
            assert!(Instant::now() < deadline, "task {task} did not end: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// DescribeInstanceDealDetail until the deal is delivered (4); panics if it fails (5).
    pub async fn wait_deal(&self, deal: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .ok("DescribeInstanceDealDetail", json!({ "DealIds": [deal] }))
                .await;
            let d = r["DealDetails"][0].clone();
            assert_ne!(d["Status"], 5, "deal {deal} failed: {r}");
            if d["Status"] == 4 {
                return d;
            }
            assert!(Instant::now() < deadline, "deal {deal} not delivered: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// CreateInstances of one standard instance (1024 MB, a month) with `replicas`
    /// replicas; waits until it is delivered; returns its id.
    pub async fn create(&self, password: &str, replicas: i64) -> String {
        let r = self
            .ok(
                "CreateInstances",
                json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
                    "BillingMode": 1, "ZoneId": 100002, "Password": password,
                    "RedisShardNum": 1, "RedisReplicasNum": replicas}),
            )
            .await;
        let deal = r["DealId"].as_str().unwrap().to_string();
        let d = self.wait_deal(&deal).await;
        d["InstanceIds"][0].as_str().unwrap().to_string()
    }

    /// DescribeInstances until the instance's Status is `want` (`None`: gone).
    pub async fn wait_status(&self, id: &str, want: Option<i64>) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self
                .ok("DescribeInstances", json!({ "InstanceId": id }))
                .await;
            let status = r["InstanceSet"][0]["Status"].as_i64();
            if status == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{id}: status {status:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The instance's DescribeInstances entry.
    pub async fn describe(&self, id: &str) -> Value {
        let r = self
            .ok("DescribeInstances", json!({ "InstanceId": id }))
            .await;
        assert_eq!(r["TotalCount"], 1, "{r}");
        r["InstanceSet"][0].clone()
    }

    /// The task of `deal` (UpgradeInstance answers a deal; its task is the instance's newest
    /// of `task_type`).
    pub async fn newest_task(&self, id: &str, task_type: &str) -> i64 {
        let r = self
            .ok(
                "DescribeTaskList",
                json!({"InstanceId": id, "TaskTypes": [task_type], "Limit": 100}),
            )
            .await;
        r["Tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["TaskId"].as_i64().unwrap())
            .max()
            .unwrap_or_else(|| panic!("a {task_type} task: {r}"))
    }
}
