//! A Tencent API 3.0 client for the benchmarks: POSTs a JSON body signed with
//! TC3-HMAC-SHA256 as the SDKs sign it (`content-type;host`), for the actions only API 3.0
//! has (CreateInstances with `RedisReplicasNum`).

use anyhow::{bail, Result};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};

const VERSION: &str = "2018-04-12";

#[derive(Clone)]
pub struct Tc3Client {
    host: String,
    secret_id: String,
    secret_key: String,
    http: reqwest::Client,
}

fn hmac256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

impl Tc3Client {
    pub fn new(host: String, secret_id: String, secret_key: String) -> Tc3Client {
        Tc3Client {
            host,
            secret_id,
            secret_key,
            http: reqwest::Client::new(),
        }
    }

    /// The `Response` object of a successful call; an `Error` in it is an error here.
    pub async fn call(&self, action: &str, params: &Value) -> Result<Value> {
        let body = serde_json::to_vec(params)?;
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs() as i64;
        let content_type = "application/json";
        let canonical = format!(
            "POST\n/\n\ncontent-type:{content_type}\nhost:{}\n\ncontent-type;host\n{}",
            self.host,
            hex::encode(Sha256::digest(&body))
        );
        let date = chrono::DateTime::from_timestamp(timestamp, 0)
            .unwrap_or_default()
            .format("%Y-%m-%d")
            .to_string();
        let scope = format!("{date}/redis/tc3_request");
        let to_sign = format!(
            "TC3-HMAC-SHA256\n{timestamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k_date = hmac256(
            format!("TC3{}", self.secret_key).as_bytes(),
            date.as_bytes(),
        );
        let k_service = hmac256(&k_date, b"redis");
        let k_signing = hmac256(&k_service, b"tc3_request");
        let signature = hex::encode(hmac256(&k_signing, to_sign.as_bytes()));
        let auth = format!(
            "TC3-HMAC-SHA256 Credential={}/{scope}, SignedHeaders=content-type;host, Signature={signature}",
            self.secret_id
        );
        let v: Value = self
            .http
            .post(format!("http://{}/", self.host))
            .header("Content-Type", content_type)
            .header("Authorization", auth)
            .header("X-TC-Action", action)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Version", VERSION)
            .header("X-TC-Region", "ap-guangzhou")
            .body(body)
            .send()
            .await?
            .json()
            .await?;
        let r = v["Response"].clone();
        if r.get("Error").is_some() {
            bail!("{action} failed: {r}");
        }
        Ok(r)
    }
}
