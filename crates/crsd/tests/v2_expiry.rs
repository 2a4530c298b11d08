//! Deadlines with an injected clock: an instance past its deadline is isolated (processes
//! stopped, data kept) unless auto-renew is set and the account can pay; RenewRedis brings an
//! isolated instance back with its data; SetRedisAutoRenew and its refusals.
//! The clock is moved, never waited for; the only waiting is for tasks to end.

mod common;

use chrono::Months;
use common::{
    balance, main_app_id, other_account, parse_time, redis_conn, service, TestCrsd, V2Client,
};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::time::{Duration, Instant};

const PASSWORD: &str = "49A2d!e@f12e";
const GB: u64 = 1024 * 1024 * 1024;

// ---------------------------------------------------------------- helpers

/// CreateRedis of `n` 1024 MB instances for one month; returns the deal id and the instances.
async fn buy(c: &V2Client, n: i64) -> (i64, Vec<Value>) {
    let v = c
        .ok(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", &n.to_string()),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await;
    let deal = v["data"]["dealId"].as_str().unwrap().to_string();
    let ids = c.wait_deal(&deal).await;
    let mut out = Vec::new();
    for id in ids {
        out.push(c.describe_one(&id).await);
    }
    (deal.parse().unwrap(), out)
}

fn id_of(inst: &Value) -> String {
    inst["redisId"].as_str().unwrap().to_string()
}

/// Moves crsd's clock to `by` past the latest of `instances`' deadlines.
fn pass_deadline(crsd: &TestCrsd, instances: &[&Value], by: chrono::Duration) {
    let latest = instances
        .iter()
        .map(|i| parse_time(crsd, &i["deadlineTime"]))
        .max()
        .unwrap();
    let now = service(crsd).now();
    crsd.clock.advance(latest - now + by);
}

async fn conn(inst: &Value) -> MultiplexedConnection {
    redis_conn(
        inst["wanIp"].as_str().unwrap(),
        inst["port"].as_u64().unwrap() as u16,
        PASSWORD,
    )
    .await
    .unwrap_or_else(|e| panic!("AUTH on {inst}: {e}"))
}

async fn set(conn: &mut MultiplexedConnection, k: &str, v: &str) {
    let _: () = redis::cmd("SET")
        .arg(k)
        .arg(v)
        .query_async(conn)
        .await
        .unwrap();
}

async fn get(conn: &mut MultiplexedConnection, k: &str) -> Option<String> {
    redis::cmd("GET").arg(k).query_async(conn).await.unwrap()
}

async fn process_id(conn: &mut MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("INFO server has process_id")
        .trim()
        .parse()
        .unwrap()
}

async fn refuses_connections(host: &str, port: u16) -> bool {
    tokio::net::TcpStream::connect((host, port)).await.is_err()
}

/// Polls DescribeRedis until the instance shows `status` (a task is carrying it there).
async fn wait_status(c: &V2Client, id: &str, status: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = c.describe_one(id).await;
        if v["status"] == status {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never reached {status}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn auto_renew(c: &V2Client, ids: &[&str], flag: &str) -> Value {
    let keys: Vec<String> = (0..ids.len()).map(|n| format!("redisIds.{n}")).collect();
    let mut params: Vec<(&str, &str)> = keys
        .iter()
        .map(String::as_str)
        .zip(ids.iter().copied())
        .collect();
    params.push(("isAutoRenew", flag));
    c.call("SetRedisAutoRenew", &params).await
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_instance_is_isolated_and_renewal_brings_its_data_back() {
    let crsd = TestCrsd::start().await;
    let svc = service(&crsd);
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let (_, mut list) = buy(&c, 1).await;
    let inst = list.remove(0);
    let id = id_of(&inst);
    let host = inst["wanIp"].as_str().unwrap().to_string();
    let port = inst["port"].as_u64().unwrap() as u16;
    let replica_port = svc
        .store()
        .instance(&id)
        .await
        .unwrap()
        .unwrap()
        .replicas()
        .next()
        .expect("a replica")
        .port;
    {
        let mut con = conn(&inst).await;
        for i in 0..50 {
            set(&mut con, &format!("key:{i}"), &format!("value-{i}")).await;
        }
    }
    assert_eq!(inst["autoRenewFlag"], 0);
    // Grown to 2 GB before it lapses: the restart after renewal must keep that size.
    let v = c
        .ok("UpgradeRedis", &[("redisId", &id), ("memSize", "2048")])
        .await;
    c.wait_deal(v["data"]["dealId"].as_str().unwrap()).await;

    // Before the deadline nothing happens.
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0));
    crsd.clock.advance(chrono::Duration::days(20));
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0));
    assert_eq!(c.describe_one(&id).await["status"], 2);

    let before = balance(&crsd, app).await;
    pass_deadline(&crsd, &[&inst], chrono::Duration::hours(1));
    assert_eq!(svc.expire_once().await.unwrap(), (0, 1));
    let isolated = wait_status(&c, &id, -2).await;
    assert_eq!(isolated["statusDesc"], "实例已隔离", "{isolated}");
    assert_eq!(isolated["deadlineTime"], inst["deadlineTime"]);
    assert!(
        refuses_connections(&host, port).await,
        "the master is stopped"
    );
    assert!(
        refuses_connections(&host, replica_port).await,
        "the replica is stopped"
    );
    // The supervisor leaves isolated instances alone, and expiry does not isolate twice.
    assert_eq!(svc.supervise_once().await.unwrap(), 0);
    assert!(refuses_connections(&host, port).await);
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0));
    assert_eq!(balance(&crsd, app).await, before, "isolation costs nothing");

    // What an isolated instance refuses.
    let v = auto_renew(&c, &[&id], "1").await;
    assert_eq!(v["code"], 5100, "{v}");
    assert!(v["message"].as_str().unwrap().starts_with("(11061)"), "{v}");
    assert_eq!(v["codeDesc"], "InstanceIsolated");
    assert_eq!(c.describe_one(&id).await["autoRenewFlag"], 0);
    for action in ["UpgradeRedisInquiryPrice", "UpgradeRedis"] {
        c.err(
            action,
            &[("redisId", &id), ("memSize", "2048")],
            5100,
            Some(10702),
        )
        .await;
    }
    assert_eq!(balance(&crsd, app).await, before);

    // RenewRedis brings it back, with its data, from now on.
    let renewed_at = svc.now();
    let v = c
        .ok("RenewRedis", &[("redisId", &id), ("period", "1")])
        .await;
    let deal_id = v["data"]["dealId"].as_str().unwrap().to_string();
    assert_eq!(balance(&crsd, app).await, before - 16000);
    let d = c
        .ok("DescribeRedisDealDetail", &[("dealIds.0", &deal_id)])
        .await["dealDetails"][0]
        .clone();
    assert_eq!(d["status"], 4, "{d}");
    assert_eq!(d["price"], 16000, "a month of 2 GB: {d}");
    assert_eq!(d["goodsDetail"]["memSize"], 2048);
    assert_eq!(d["goodsDetail"]["curDeadline"], inst["deadlineTime"], "{d}");
    assert_eq!(d["goodsDetail"]["timeSpan"], 1);

    let back = wait_status(&c, &id, 2).await;
    assert_eq!(back["statusDesc"], "实例运行中");
    assert_eq!(back["port"], inst["port"], "same address as before");
    let deadline = parse_time(&crsd, &back["deadlineTime"]);
    let from = renewed_at.checked_add_months(Months::new(1)).unwrap();
    assert!(
        deadline >= from - chrono::Duration::seconds(1)
            && deadline <= svc.now().checked_add_months(Months::new(1)).unwrap(),
        "an expired instance is renewed from the renewal: {back}"
    );
    let mut con = conn(&back).await;
    for i in 0..50 {
        assert_eq!(
            get(&mut con, &format!("key:{i}")).await,
            Some(format!("value-{i}")),
            "key:{i} survived isolation"
        );
    }
    let maxmemory = common::info_maxmemory(&mut con).await;
    assert_eq!(maxmemory, 2 * GB, "the upgraded size");
    assert_eq!(back["size"], 2048);
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0));
    // Running again, it takes settings again.
    let v = auto_renew(&c, &[&id], "1").await;
    assert_eq!(v["code"], 0, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renew_renews_at_the_deadline_instead_of_isolating() {
    let crsd = TestCrsd::start().await;
    let svc = service(&crsd);
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let uin = crsd
        .running
        .as_ref()
        .unwrap()
        .bootstrap
        .as_ref()
        .unwrap()
        .uin
        .clone();
    let (create_deal, list) = buy(&c, 2).await;
    let (renewing, lapsing) = (&list[0], &list[1]);
    let (rid, lid) = (id_of(renewing), id_of(lapsing));

    let v = auto_renew(&c, &[&rid], "1").await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(v["codeDesc"], "Success");
    let v = auto_renew(&c, &[&lid], "2").await;
    assert_eq!(v["code"], 0, "{v}");
    assert_eq!(c.describe_one(&rid).await["autoRenewFlag"], 1);
    assert_eq!(c.describe_one(&lid).await["autoRenewFlag"], 2);

    let mut con = conn(renewing).await;
    set(&mut con, "still", "here").await;
    let pid = process_id(&mut con).await;
    let before = balance(&crsd, app).await;

    pass_deadline(&crsd, &[renewing, lapsing], chrono::Duration::hours(1));
    assert_eq!(svc.expire_once().await.unwrap(), (1, 1));

    // The auto-renewed one: charged a month, deadline moved, never stopped.
    assert_eq!(balance(&crsd, app).await, before - 8000);
    let after = c.describe_one(&rid).await;
    assert_eq!(after["status"], 2, "{after}");
    assert_eq!(after["autoRenewFlag"], 1);
    let old = parse_time(&crsd, &renewing["deadlineTime"]);
    let new = parse_time(&crsd, &after["deadlineTime"]);
    assert!(new > svc.now() + chrono::Duration::days(27), "{after}");
    assert!(
        new >= old.checked_add_months(Months::new(1)).unwrap(),
        "{after}"
    );
    assert_eq!(process_id(&mut con).await, pid, "never restarted");
    assert_eq!(get(&mut con, "still").await.as_deref(), Some("here"));

    // The renewal is a deal like RenewRedis records (the next id after the purchase).
    let renewal = (create_deal + 1).to_string();
    let d = c
        .ok("DescribeRedisDealDetail", &[("dealIds.0", &renewal)])
        .await["dealDetails"][0]
        .clone();
    assert_eq!(d["status"], 4, "{d}");
    assert_eq!(d["description"], "发货成功");
    assert_eq!(d["price"], 8000);
    assert_eq!(d["creator"], uin.as_str());
    assert_eq!(d["goodsDetail"]["curDeadline"], renewing["deadlineTime"]);
    assert_eq!(d["goodsDetail"]["timeSpan"], 1);
    assert_eq!(d["goodsDetail"]["timeUnit"], "m");
    assert_eq!(d["goodsDetail"]["redisIds"], serde_json::json!([rid]));
    // Exactly one renewal.
    c.err(
        "DescribeRedisDealDetail",
        &[("dealIds.0", &(create_deal + 2).to_string())],
        5000,
        Some(11059),
    )
    .await;

    // The one set to 2 (neither renew nor notify) lapsed.
    let lapsed = wait_status(&c, &lid, -2).await;
    assert!(
        refuses_connections(
            lapsed["wanIp"].as_str().unwrap(),
            lapsed["port"].as_u64().unwrap() as u16
        )
        .await
    );

    // The next pass has nothing to do; a month later it renews again.
    assert_eq!(svc.expire_once().await.unwrap(), (0, 0));
    pass_deadline(&crsd, &[&after], chrono::Duration::minutes(5));
    assert_eq!(svc.expire_once().await.unwrap(), (1, 0));
    assert_eq!(balance(&crsd, app).await, before - 16000);
    assert_eq!(c.describe_one(&rid).await["status"], 2);
    assert_eq!(c.describe_one(&lid).await["status"], -2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_renew_without_the_money_isolates() {
    let crsd = TestCrsd::start().await;
    let svc = service(&crsd);
    let (poor, poor_app) = other_account(&crsd, 8000 + 100).await;
    let (create_deal, mut list) = buy(&poor, 1).await;
    let inst = list.remove(0);
    let id = id_of(&inst);
    assert_eq!(balance(&crsd, poor_app).await, 100);
    let v = auto_renew(&poor, &[&id], "1").await;
    assert_eq!(v["code"], 0, "{v}");

    pass_deadline(&crsd, &[&inst], chrono::Duration::hours(1));
    assert_eq!(svc.expire_once().await.unwrap(), (0, 1));
    let isolated = wait_status(&poor, &id, -2).await;
    assert_eq!(isolated["statusDesc"], "实例已隔离");
    assert_eq!(isolated["deadlineTime"], inst["deadlineTime"]);
    assert!(
        refuses_connections(
            inst["wanIp"].as_str().unwrap(),
            inst["port"].as_u64().unwrap() as u16
        )
        .await
    );
    assert_eq!(balance(&crsd, poor_app).await, 100, "nothing charged");
    poor.err(
        "DescribeRedisDealDetail",
        &[("dealIds.0", &(create_deal + 1).to_string())],
        5000,
        Some(11059),
    )
    .await;
    // Nor can it renew by hand.
    poor.err(
        "RenewRedis",
        &[("redisId", &id), ("period", "1")],
        5300,
        Some(100207),
    )
    .await;
    assert_eq!(poor.describe_one(&id).await["status"], -2);
    assert_eq!(balance(&crsd, poor_app).await, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_auto_renew_changes_all_or_nothing() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let (_, list) = buy(&c, 2).await;
    let (a, b) = (id_of(&list[0]), id_of(&list[1]));
    let flags = |c: V2Client, a: String, b: String| async move {
        (
            c.describe_one(&a).await["autoRenewFlag"].as_i64().unwrap(),
            c.describe_one(&b).await["autoRenewFlag"].as_i64().unwrap(),
        )
    };

    for (flag, want) in [("2", 2), ("1", 1), ("0", 0), ("1", 1)] {
        let v = auto_renew(&c, &[&a, &b], flag).await;
        assert_eq!(v["code"], 0, "{v}");
        assert_eq!(flags(c.clone(), a.clone(), b.clone()).await, (want, want));
    }

    for bad in ["3", "-1", "abc", "1.5"] {
        let v = auto_renew(&c, &[&a, &b], bad).await;
        assert_eq!(v["code"], 4000, "{bad}: {v}");
        assert!(
            v["message"].as_str().unwrap().starts_with("(11060)"),
            "{bad}: {v}"
        );
        assert_eq!(v["codeDesc"], "IsAutoRenewError");
    }
    let v = c.call("SetRedisAutoRenew", &[("redisIds.0", &a)]).await;
    assert_eq!(v["code"], 4000, "isAutoRenew is required: {v}");
    let v = c.call("SetRedisAutoRenew", &[("isAutoRenew", "0")]).await;
    assert_eq!(v["code"], 4000, "redisIds.n is required: {v}");

    // An unknown id, alone or with known ones, refuses the whole call.
    for ids in [
        vec!["crs-nosuch01"],
        vec![a.as_str(), "crs-nosuch01", b.as_str()],
    ] {
        let v = auto_renew(&c, &ids, "0").await;
        assert_eq!(v["code"], 5000, "{v}");
        assert!(v["message"].as_str().unwrap().starts_with("(10701)"), "{v}");
        assert_eq!(v["codeDesc"], "InstanceNotExists");
    }
    // So does another account's instance, both ways round.
    let (other, _) = other_account(&crsd, 100_000).await;
    let (_, theirs) = buy(&other, 1).await;
    let their_id = id_of(&theirs[0]);
    let v = auto_renew(&c, &[&a, &their_id], "0").await;
    assert!(v["message"].as_str().unwrap().starts_with("(10701)"), "{v}");
    let v = auto_renew(&other, &[&a], "0").await;
    assert!(v["message"].as_str().unwrap().starts_with("(10701)"), "{v}");
    assert_eq!(other.describe_one(&their_id).await["autoRenewFlag"], 0);

    assert_eq!(flags(c.clone(), a.clone(), b.clone()).await, (1, 1));
}
