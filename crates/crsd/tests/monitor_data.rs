//! Cloud Monitor's GetMonitorData (service `monitor`, 2018-07-24) over real HTTP, from the
//! history crsd keeps of real redis-server processes, with the injected clock moving between
//! sampling rounds: an instance's figures are its master's (a replica's keys are not counted
//! twice), buckets follow Period, the caller sees only its own instances, the bounds of the
//! real API hold, and each API answers only its own actions and version.

mod common;

use chrono::Duration as Age;
use common::tc3::Tc3;
use common::{redis_conn, service, TestCrsd};
use serde_json::{json, Value};

const PASSWORD: &str = "Monitor-2024-Pass";
const MONITOR: &str = "monitor";
const MONITOR_VERSION: &str = "2018-07-24";

/// A crsd whose own sampler never runs during the test: rounds are the test's.
async fn start() -> TestCrsd {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.monitor.sample_interval_secs = 3600;
    TestCrsd::start_with(dir, cfg).await
}

fn query(metric: &str, ids: &[&str], period: i64, start: &str, end: &str) -> Value {
    let instances: Vec<Value> = ids
        .iter()
        .map(|id| json!({ "Dimensions": [{ "Name": "instanceid", "Value": id }] }))
        .collect();
    json!({
        "Namespace": "QCE/REDIS_MEM",
        "MetricName": metric,
        "Instances": instances,
        "Period": period,
        "StartTime": start,
        "EndTime": end,
    })
}

async fn monitor(c: &Tc3, params: Value) -> Value {
    c.call_in(MONITOR, MONITOR_VERSION, "GetMonitorData", params)
        .await
}

/// The one instance's values in an answer that must succeed.
fn values(r: &Value) -> Vec<f64> {
    assert!(r.get("Error").is_none(), "{r}");
    assert_eq!(r["DataPoints"].as_array().unwrap().len(), 1, "{r}");
    let p = &r["DataPoints"][0];
    let ts = p["Timestamps"].as_array().unwrap();
    let vs: Vec<f64> = p["Values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(ts.len(), vs.len(), "{r}");
    vs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charts_data_from_the_history_for_the_callers_instances_only() {
    let crsd = start().await;
    let c = Tc3::like(&crsd.client());
    let id = c.create(PASSWORD, 1).await;
    let svc = service(&crsd);
    let rfc = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
    let t0 = svc.now();
    assert_eq!(svc.sample_once().await.unwrap().sampled, 2);

    // 100 keys, 20 hits and 20 misses on the master, through the instance's address.
    let inst = c.describe(&id).await;
    let host = inst["WanIp"].as_str().unwrap();
    let port = inst["Port"].as_u64().unwrap() as u16;
    let mut con = redis_conn(host, port, PASSWORD).await.unwrap();
    for i in 0..100 {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async::<()>(&mut con)
            .await
            .unwrap();
    }
    for i in 0..20 {
        for key in [format!("k{i}"), format!("missing{i}")] {
            redis::cmd("GET")
                .arg(key)
                .query_async::<Option<String>>(&mut con)
                .await
                .unwrap();
        }
    }
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    for _ in 0..2 {
        crsd.clock.advance(Age::seconds(60));
        assert_eq!(svc.sample_once().await.unwrap().sampled, 2);
    }
    let (start, end) = (rfc(t0 - Age::seconds(1)), rfc(svc.now()));

    // Keys: the master's 100 in each minute after the writes, not 200 with the replica's.
    let r = monitor(&c, query("Keys", &[&id], 60, &start, &end)).await;
    assert_eq!(r["Period"], 60, "{r}");
    assert_eq!(r["MetricName"], "Keys");
    assert_eq!(r["DataPoints"][0]["Dimensions"][0]["Name"], "instanceid");
    assert_eq!(r["DataPoints"][0]["Dimensions"][0]["Value"], id.as_str());
    let keys = values(&r);
    assert_eq!(keys.len(), 3, "three rounds a minute apart: {r}");
    assert_eq!(&keys[1..], &[100.0, 100.0], "{r}");
    let stamps: Vec<i64> = r["DataPoints"][0]["Timestamps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    // Rounds are a minute apart by crsd's clock plus the real time between them, so a
    // round may land one bucket further on.
    assert!(
        stamps
            .windows(2)
            .all(|w| [60, 120].contains(&(w[1] - w[0]))),
        "{stamps:?}"
    );
    assert!(stamps.iter().all(|t| t % 60 == 0), "{stamps:?}");
    // In one bucket of an hour (or two, if the three minutes straddle an hour): the highest.
    let hourly = values(&monitor(&c, query("Keys", &[&id], 3600, &start, &end)).await);
    assert!(!hourly.is_empty() && hourly.len() <= 2 && hourly.contains(&100.0));

    // The hit ratio of the minute of the GETs: 20 hits of 40 lookups.
    let ratio = values(&monitor(&c, query("CmdHitsRatio", &[&id], 60, &start, &end)).await);
    assert_eq!(ratio.first(), Some(&50.0), "{ratio:?}");
    let mem = values(&monitor(&c, query("MemUsed", &[&id], 60, &start, &end)).await);
    assert!(mem.iter().all(|m| *m > 0.1 && *m < 1024.0), "MB: {mem:?}");
    let util = values(&monitor(&c, query("MemUtil", &[&id], 60, &start, &end)).await);
    assert!(util.iter().all(|u| *u > 0.0 && *u < 100.0), "%: {util:?}");
    let conns = values(&monitor(&c, query("Connections", &[&id], 60, &start, &end)).await);
    assert!(conns.iter().all(|n| *n >= 1.0), "{conns:?}");
    let ops = values(&monitor(&c, query("Commands", &[&id], 60, &start, &end)).await);
    assert!(ops[1] > 0.0, "{ops:?}");

    // Nothing before the history.
    let before = rfc(t0 - Age::hours(2));
    let early = monitor(
        &c,
        query("Keys", &[&id], 60, &before, &rfc(t0 - Age::hours(1))),
    )
    .await;
    assert!(values(&early).is_empty(), "{early}");

    // Another account's instance is not found, alone or beside its own.
    let (other, _) = common::other_account(&crsd, 1_000_000).await;
    let other = Tc3::like(&other);
    let refused = monitor(&other, query("Keys", &[&id], 60, &start, &end)).await;
    assert_eq!(
        refused["Error"]["Code"], "ResourceNotFound.InstanceNotExists",
        "{refused}"
    );
    assert!(refused.get("DataPoints").is_none());

    // The real API's bounds.
    let ids: Vec<String> = (0..11).map(|_| id.clone()).collect();
    let eleven: Vec<&str> = ids.iter().map(String::as_str).collect();
    for (params, name) in [
        (query("Keys", &eleven, 60, &start, &end), "Instances"),
        (query("Keys", &[&id], 10, &start, &end), "Period"),
        (
            query("Keys", &[&id], 60, &rfc(t0 - Age::hours(25)), &end),
            "Period",
        ),
        (query("Keys", &[&id], 60, &end, &start), "EndTime"),
        (query("Keys", &[&id], 60, "yesterday", &end), "StartTime"),
        (
            query("NoSuchMetric", &[&id], 60, &start, &end),
            "MetricName",
        ),
    ] {
        let r = monitor(&c, params).await;
        assert_eq!(r["Error"]["Code"], "InvalidParameterValue", "{r}");
        assert!(
            r["Error"]["Message"].as_str().unwrap().contains(name),
            "{name}: {r}"
        );
    }
    let mut wrong_namespace = query("Keys", &[&id], 60, &start, &end);
    wrong_namespace["Namespace"] = json!("QCE/CVM");
    let r = monitor(&c, wrong_namespace).await;
    assert_eq!(r["Error"]["Code"], "InvalidParameterValue", "{r}");
    let mut no_dimension = query("Keys", &[&id], 60, &start, &end);
    no_dimension["Instances"][0]["Dimensions"][0]["Name"] = json!("InstanceId2");
    let r = monitor(&c, no_dimension).await;
    assert_eq!(r["Error"]["Code"], "InvalidParameterValue", "{r}");

    // Each API answers its own actions, in its own version; no other service is accepted.
    let q = query("Keys", &[&id], 60, &start, &end);
    let r = c.call("GetMonitorData", q.clone()).await;
    assert_eq!(r["Error"]["Code"], "InvalidAction", "{r}");
    let r = c
        .call_in(MONITOR, MONITOR_VERSION, "DescribeInstances", json!({}))
        .await;
    assert_eq!(r["Error"]["Code"], "InvalidAction", "{r}");
    let r = c
        .call_in(MONITOR, common::tc3::VERSION, "GetMonitorData", q.clone())
        .await;
    assert_eq!(r["Error"]["Code"], "InvalidParameterValue", "{r}");
    let r = c
        .call_in("redis", MONITOR_VERSION, "DescribeInstances", json!({}))
        .await;
    assert_eq!(r["Error"]["Code"], "InvalidParameterValue", "{r}");
    let r = c.call_in("cvm", MONITOR_VERSION, "GetMonitorData", q).await;
    assert_eq!(
        r["Error"]["Code"], "AuthFailure.InvalidAuthorization",
        "{r}"
    );
}
