//! The API 3.0 monitoring actions against a real instance (a master and a replica): commands
//! counted from redis' own counters, over the whole life of the process and over a span
//! after a snapshot; connections by source address without crsd's own; the biggest keys
//! found by a walk on the replica; hot keys only under an LFU policy; and the refusals
//! (another account's instance, a bad SpanType, ReqType or Date).

mod common;

use common::tc3::Tc3;
use common::{redis_conn, service, TestCrsd};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Monitor2024(ok";

/// A crsd whose own sampler never runs during the test: snapshots are the test's.
async fn start() -> TestCrsd {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.monitor.sample_interval_secs = 3600;
    TestCrsd::start_with(dir, cfg).await
}

/// The entry of `Data` whose `field` is `value`.
fn entry<'a>(r: &'a Value, field: &str, value: &str) -> Option<&'a Value> {
    r["Data"]
        .as_array()
        .unwrap_or_else(|| panic!("a Data list: {r}"))
        .iter()
        .find(|e| e[field] == value)
}

fn count_of(r: &Value, cmd: &str) -> u64 {
    entry(r, "Cmd", cmd).unwrap_or_else(|| panic!("{cmd} is listed: {r}"))["Count"]
        .as_u64()
        .unwrap()
}

async fn set_keys(con: &mut redis::aio::MultiplexedConnection, prefix: &str, n: usize) {
    for i in 0..n {
        redis::cmd("SET")
            .arg(format!("{prefix}{i}"))
            .arg(i)
            .query_async::<()>(con)
            .await
            .unwrap();
    }
}

/// Calls of `cmd` a node's counters show (0 when none).
async fn calls_on(svc: &crsd_service::Service, spec: &crsd_engine::NodeSpec, cmd: &str) -> u64 {
    let c = svc.runtime().command_counters(spec).await.unwrap();
    c.commands
        .iter()
        .find(|c| c.name == cmd)
        .map_or(0, |c| c.calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitoring_actions_answer_from_a_real_instance() {
    let crsd = start().await;
    let c = Tc3::like(&crsd.client());
    let svc = service(&crsd);
    let id = c.create(PASSWORD, 1).await;
    let inst = c.describe(&id).await;
    let (host, port) = (
        inst["WanIp"].as_str().unwrap().to_string(),
        inst["Port"].as_u64().unwrap() as u16,
    );
    let mut con = redis_conn(&host, port, PASSWORD).await.unwrap();
    let mut second = redis_conn(&host, port, PASSWORD).await.unwrap();
    let _: () = redis::cmd("PING").query_async(&mut second).await.unwrap();

    // Hot keys: none under the default policy (redis does not track use).
    let hot = c
        .ok(
            "DescribeInstanceMonitorHotKey",
            json!({"InstanceId": id, "SpanType": 1}),
        )
        .await;
    assert_eq!(hot["Data"], json!([]), "{hot}");
    let r = c
        .ok(
            "ModifyInstanceParams",
            json!({"InstanceId": id, "InstanceParams": [
                {"Key": "maxmemory-policy", "Value": "allkeys-lfu"}]}),
        )
        .await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");

    // 50 SETs and 10 GETs: the whole life of the process (no snapshot yet).
    set_keys(&mut con, "k", 50).await;
    for i in 0..10 {
        let _: Option<String> = redis::cmd("GET")
            .arg(format!("k{i}"))
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let top = c
        .ok(
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": 1}),
        )
        .await;
    assert!(count_of(&top, "set") >= 50, "{top}");
    assert!(count_of(&top, "get") >= 10, "{top}");
    let took = c
        .ok(
            "DescribeInstanceMonitorTopNCmdTook",
            json!({"InstanceId": id, "SpanType": 2}),
        )
        .await;
    let set_took = entry(&took, "Cmd", "set").unwrap_or_else(|| panic!("{took}"));
    assert!(set_took["Took"].is_u64(), "{took}");
    let today = || {
        svc.now()
            .with_timezone(&svc.time_zone())
            .format("%Y%m%d")
            .to_string()
    };
    let dist = c
        .ok(
            "DescribeInstanceMonitorTookDist",
            json!({"InstanceId": id, "SpanType": 1, "Date": today()}),
        )
        .await;
    let ladder: Vec<i64> = dist["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["Ladder"].as_i64().unwrap())
        .collect();
    assert_eq!(ladder, vec![1, 5, 10, 50, 200, -1], "{dist}");
    let calls: u64 = dist["Data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["Size"].as_u64().unwrap())
        .sum();
    assert!(calls >= 60, "{dist}");
    assert!(dist["Data"][0]["Updatetime"].as_i64().unwrap() > 0);

    // A snapshot, 20 minutes, 30 more SETs: the last interval counts exactly those; a day
    // has no snapshot that old, so it is the whole life again.
    assert_eq!(svc.snapshot_commands_once().await.unwrap(), 2);
    let kept_at = svc.now();
    crsd.clock.advance(chrono::Duration::minutes(20));
    set_keys(&mut con, "j", 30).await;
    let now = c
        .ok(
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": 1}),
        )
        .await;
    assert_eq!(count_of(&now, "set"), 30, "{now}");
    assert!(entry(&now, "Cmd", "get").is_none(), "no GET since: {now}");
    let day = c
        .ok(
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": 4}),
        )
        .await;
    assert_eq!(count_of(&day, "set"), 80, "{day}");

    // Connections by source: the test's two, through the proxy on loopback; crsd's own
    // (admin, replication, Sentinel, health checks) are not counted.
    let sip = c
        .ok("DescribeInstanceMonitorSIP", json!({"InstanceId": id}))
        .await;
    let local = entry(&sip, "Ip", "127.0.0.1").unwrap_or_else(|| panic!("{sip}"));
    assert_eq!(local["Conn"], 2, "{sip}");
    assert_eq!(sip["Data"].as_array().unwrap().len(), 1, "{sip}");

    // A planted 1 MB key is the biggest, found by a walk on the replica.
    let big = vec![b'x'; 1024 * 1024];
    let _: () = redis::cmd("SET")
        .arg("planted")
        .arg(&big)
        .query_async(&mut con)
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(acked, 1);
    let model = svc.store().instance(&id).await.unwrap().unwrap();
    let (master, replica) = common::master_and_replica(&svc, &model);
    let asked = Instant::now();
    let keys = loop {
        let r = c
            .ok(
                "DescribeInstanceMonitorBigKey",
                json!({"InstanceId": id, "ReqType": 2, "Date": today()}),
            )
            .await;
        if r["Data"].as_array().is_some_and(|d| !d.is_empty()) {
            break r;
        }
        assert!(asked.elapsed() < Duration::from_secs(30), "no report: {r}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let first = &keys["Data"][0];
    assert_eq!(first["Key"], "planted", "{keys}");
    assert_eq!(first["Type"], "string");
    assert_eq!(first["DB"], 0);
    assert!(first["Size"].as_u64().unwrap() >= 1024 * 1024, "{keys}");
    assert!(calls_on(&svc, &replica, "memory|usage").await >= 81);
    assert_eq!(calls_on(&svc, &master, "memory|usage").await, 0);
    assert_eq!(calls_on(&svc, &master, "scan").await, 0);
    let strings = c
        .ok(
            "DescribeInstanceMonitorBigKey",
            json!({"InstanceId": id, "ReqType": 1, "Date": today()}),
        )
        .await;
    assert_eq!(strings["Data"][0]["Key"], "planted", "{strings}");
    let sizes = c
        .ok(
            "DescribeInstanceMonitorBigKeySizeDist",
            json!({"InstanceId": id, "Date": today()}),
        )
        .await;
    let rungs = sizes["Data"].as_array().unwrap();
    assert_eq!(rungs.len(), 6, "{sizes}");
    let total: u64 = rungs.iter().map(|r| r["Size"].as_u64().unwrap()).sum();
    assert_eq!(total, 81, "50 + 30 keys and the planted one: {sizes}");
    assert_eq!(rungs[0]["Size"], 80, "the small ones within 1 KB: {sizes}");
    assert_eq!(rungs[4]["Ladder"], 10240);
    assert_eq!(rungs[4]["Size"], 1, "the planted one within 10 MB: {sizes}");
    let types = c
        .ok(
            "DescribeInstanceMonitorBigKeyTypeDist",
            json!({"InstanceId": id, "Date": today()}),
        )
        .await;
    let string = entry(&types, "Type", "string").unwrap_or_else(|| panic!("{types}"));
    assert_eq!(string["Count"], 81, "{types}");
    assert!(string["Size"].as_u64().unwrap() > 1024 * 1024);
    // Another day has no report.
    let other_day = c
        .ok(
            "DescribeInstanceMonitorBigKey",
            json!({"InstanceId": id, "ReqType": 2, "Date": "20190219"}),
        )
        .await;
    assert_eq!(other_day["Data"], json!([]), "{other_day}");

    // Hot keys under allkeys-lfu: the hammered key first.
    for _ in 0..2000 {
        let _: Option<String> = redis::cmd("GET")
            .arg("k7")
            .query_async(&mut con)
            .await
            .unwrap();
    }
    let hot = c
        .ok(
            "DescribeInstanceMonitorHotKey",
            json!({"InstanceId": id, "SpanType": 1}),
        )
        .await;
    assert_eq!(hot["Data"][0]["Key"], "k7", "{hot}");
    assert_eq!(hot["Data"][0]["Type"], "string");
    assert!(hot["Data"][0]["Count"].as_u64().unwrap() >= 100, "{hot}");

    // Refusals: another account's instance does not exist for it; bad values are refused.
    let (other, _) = common::other_account(&crsd, 0).await;
    let o = Tc3::like(&other);
    let date = today();
    for (action, params) in [
        (
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": 1}),
        ),
        (
            "DescribeInstanceMonitorTopNCmdTook",
            json!({"InstanceId": id, "SpanType": 1}),
        ),
        (
            "DescribeInstanceMonitorTookDist",
            json!({"InstanceId": id, "SpanType": 1, "Date": date}),
        ),
        ("DescribeInstanceMonitorSIP", json!({"InstanceId": id})),
        (
            "DescribeInstanceMonitorBigKey",
            json!({"InstanceId": id, "ReqType": 2, "Date": date}),
        ),
        (
            "DescribeInstanceMonitorBigKeySizeDist",
            json!({"InstanceId": id, "Date": date}),
        ),
        (
            "DescribeInstanceMonitorBigKeyTypeDist",
            json!({"InstanceId": id, "Date": date}),
        ),
        (
            "DescribeInstanceMonitorHotKey",
            json!({"InstanceId": id, "SpanType": 1}),
        ),
    ] {
        o.err(action, params, "ResourceNotFound.InstanceNotExists")
            .await;
    }
    for span in [0, 5, -1] {
        c.err(
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": span}),
            "InvalidParameterValue",
        )
        .await;
    }
    c.err(
        "DescribeInstanceMonitorHotKey",
        json!({"InstanceId": id, "SpanType": 9}),
        "InvalidParameterValue",
    )
    .await;
    c.err(
        "DescribeInstanceMonitorBigKey",
        json!({"InstanceId": id, "ReqType": 3, "Date": date}),
        "InvalidParameterValue",
    )
    .await;
    c.err(
        "DescribeInstanceMonitorTookDist",
        json!({"InstanceId": id, "SpanType": 1, "Date": "yesterday"}),
        "InvalidParameterValue",
    )
    .await;
    c.err(
        "DescribeInstanceMonitorTopNCmd",
        json!({"InstanceId": id}),
        "MissingParameter",
    )
    .await;
    // Nothing changed: the same counts over the last interval (and the planted key's SET).
    let again = c
        .ok(
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": 1}),
        )
        .await;
    assert_eq!(count_of(&again, "set"), 31, "{again}");

    // Snapshots age out with the history's retention (a day by default).
    let store = svc.store();
    assert!(store
        .command_snapshot_before(&master.name, kept_at)
        .await
        .unwrap()
        .is_some());
    crsd.clock.advance(chrono::Duration::hours(25));
    assert_eq!(svc.snapshot_commands_once().await.unwrap(), 2);
    assert!(store
        .command_snapshot_before(&master.name, kept_at)
        .await
        .unwrap()
        .is_none());

    // An isolated instance has no process to ask: refused, as other reads of it are.
    let r = c
        .ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    let task: i64 = r["DealId"].as_str().unwrap().parse().unwrap();
    assert_eq!(c.wait_task(task).await, "succeed");
    for (action, params) in [
        (
            "DescribeInstanceMonitorTopNCmd",
            json!({"InstanceId": id, "SpanType": 1}),
        ),
        ("DescribeInstanceMonitorSIP", json!({"InstanceId": id})),
        (
            "DescribeInstanceMonitorBigKey",
            json!({"InstanceId": id, "ReqType": 2, "Date": today()}),
        ),
        (
            "DescribeInstanceMonitorHotKey",
            json!({"InstanceId": id, "SpanType": 1}),
        ),
    ] {
        c.err(action, params, "ResourceUnavailable.InstanceStatusAbnormal")
            .await;
    }
}
