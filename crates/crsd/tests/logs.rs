//! crsd's log as an operator reads it: the real binary with `[log] format = "json"`, every
//! line a JSON object; one access line per API request (dialect, action, account, instances,
//! result code, latency), for a creation, a read, a refused signature and an unknown action;
//! and no secret anywhere in the log: not the account's key, not a signature, not the
//! instance's password.

mod common;

use common::daemon::Daemon;
use serde_json::Value;
use std::time::{Duration, Instant};

const SECRET_ID: &str = "AKIDlogs00000000000000000000000000";
const SECRET_KEY: &str = "logs-secret-key-000000000000000000";
const PASSWORD: &str = "Logs1a2b3c!x";

/// The log's lines, each parsed (a line that is not a JSON object fails the test).
fn lines(d: &Daemon) -> Vec<Value> {
    d.log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            assert!(v.is_object(), "not an object: {l}");
            v
        })
        .collect()
}

/// The access lines for `action`, waiting a moment for the last one to be written.
async fn access(d: &Daemon, action: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<Value> = lines(d)
            .into_iter()
            .filter(|l| l["target"] == "crsd::access" && l["action"] == action)
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_with_one_access_line_per_request_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    let config = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, format!("{config}[log]\nformat = \"json\"\n")).unwrap();
    d.start().await;
    let v2 = d.client();

    let inst = v2.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();
    let app_id = inst["appid"].as_i64().or_else(|| inst["appId"].as_i64());

    let created = access(&d, "CreateRedis", 1).await;
    assert_eq!(created.len(), 1, "one line for one request: {created:?}");
    let line = &created[0];
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["dialect"], "v2", "{line}");
    assert_eq!(line["code"], "0", "{line}");
    assert!(line["app_id"].as_i64().is_some(), "{line}");
    if let Some(app_id) = app_id {
        assert_eq!(line["app_id"], app_id, "{line}");
    }
    assert!(
        line["latency_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{line}"
    );
    assert!(line["timestamp"].is_string(), "{line}");

    // A read naming the instance: the id is in its line.
    let described = access(&d, "DescribeRedis", 1).await;
    assert!(
        described
            .iter()
            .any(|l| l["instances"] == id && l["code"] == "0"),
        "{described:?}"
    );

    // A wrong key: refused before the account or the action is known (the action is read
    // only from a signed request).
    let mut wrong = d.client();
    wrong.secret_key = "not-the-key-000000000000000000000".into();
    let v = wrong.call("DescribeRedisZones", &[]).await;
    assert_ne!(v["code"], 0, "{v}");
    let refused = access(&d, "unknown", 1).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["code"], v["code"].to_string(), "{refused:?}");
    assert!(
        refused[0].get("app_id").is_none(),
        "no account: {refused:?}"
    );

    // An action no dialect knows, signed: its account, under `unknown`.
    let v = v2.call("NoSuchAction", &[]).await;
    assert_ne!(v["code"], 0, "{v}");
    let unknown = access(&d, "unknown", 2).await;
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(unknown[1]["app_id"].as_i64().is_some(), "{unknown:?}");

    // crsd's other lines are JSON objects too (checked by `lines`), and nothing secret is in
    // any of them.
    let log = d.log();
    assert!(log.contains("crsd is listening"), "{log}");
    for secret in [SECRET_KEY, PASSWORD, "not-the-key"] {
        assert!(!log.contains(secret), "{secret} is in the log");
    }
    assert!(!log.contains("Signature"), "a signature is in the log");
}
