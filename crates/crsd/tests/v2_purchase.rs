//! The purchase side of the v2 API end to end (real HTTP, real redis-server, real SQLite):
//! InquiryRedisPrice, CreateRedis, RenewRedis, UpgradeRedisInquiryPrice, UpgradeRedis and
//! DescribeRedisDealDetail, with the money they move and the refusals that must move nothing.

mod common;

use chrono::{DateTime, Months, Utc};
use common::{
    balance, main_app_id, other_account, parse_time, redis_conn, service, TestCrsd, V2Client,
};
use redis::aio::MultiplexedConnection;
use serde_json::Value;

const PASSWORD: &str = "49A2d!e@f12e";
const PRICE_PER_GB_MONTH: i64 = 8000;
const GB: u64 = 1024 * 1024 * 1024;

// ---------------------------------------------------------------- helpers

fn main_uin(crsd: &TestCrsd) -> String {
    crsd.running
        .as_ref()
        .unwrap()
        .bootstrap
        .as_ref()
        .unwrap()
        .uin
        .clone()
}

fn fmt_time(crsd: &TestCrsd, t: DateTime<Utc>) -> String {
    crsd_core::timefmt::format(t, service(crsd).time_zone())
}

async fn total_count(c: &V2Client) -> i64 {
    let v = c
        .ok("DescribeRedis", &[("limit", "100"), ("offset", "0")])
        .await;
    v["totalCount"].as_i64().unwrap()
}

async fn deal(c: &V2Client, id: &str) -> Value {
    let v = c.ok("DescribeRedisDealDetail", &[("dealIds.0", id)]).await;
    assert_eq!(v["dealDetails"].as_array().unwrap().len(), 1, "{v}");
    v["dealDetails"][0].clone()
}

async fn conn(inst: &Value, password: &str) -> MultiplexedConnection {
    redis_conn(
        inst["wanIp"].as_str().unwrap(),
        inst["port"].as_u64().unwrap() as u16,
        password,
    )
    .await
    .unwrap_or_else(|e| panic!("AUTH on {inst}: {e}"))
}

async fn maxmemory(conn: &mut MultiplexedConnection) -> u64 {
    common::info_maxmemory(conn).await
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

fn expected_upgrade_price(old_mb: i64, new_mb: i64, remaining: chrono::Duration) -> f64 {
    let months = remaining.num_milliseconds() as f64 / 1000.0 / (30.0 * 86400.0);
    PRICE_PER_GB_MONTH as f64 * (new_mb - old_mb) as f64 / 1024.0 * months
}

type Pairs<'a> = Vec<(&'a str, &'a str)>;

fn price_params<'a>(
    zone: &'a str,
    type_id: &'a str,
    mem: &'a str,
    num: &'a str,
    period: &'a str,
) -> Pairs<'a> {
    vec![
        ("zoneId", zone),
        ("typeId", type_id),
        ("memSize", mem),
        ("goodsNum", num),
        ("period", period),
    ]
}

fn create_params<'a>(
    type_id: &'a str,
    mem: &'a str,
    num: &'a str,
    period: &'a str,
    password: &'a str,
) -> Pairs<'a> {
    let mut p = price_params("100002", type_id, mem, num, period);
    p.push(("password", password));
    p
}

// ---------------------------------------------------------------- zones and product

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zones_and_product_describe_exactly_what_can_be_priced() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();

    let v = c.ok("DescribeRedisZones", &[]).await;
    assert_eq!(
        v["data"]["zones"],
        serde_json::json!([
            {"100002": "广州二区"},
            {"200001": "上海一区"},
            {"300001": "香港一区"},
            {"400001": "北美一区"}
        ]),
        "{v}"
    );

    let all = c.ok("DescribeRedisProduct", &[]).await;
    let zones = all["data"].as_array().unwrap();
    assert_eq!(zones.len(), 4, "{all}");
    let one = c
        .ok(
            "DescribeRedisProduct",
            &[("zoneIds.0", "200001"), ("typeId", "0")],
        )
        .await;
    assert_eq!(one["data"].as_array().unwrap().len(), 1, "{one}");
    assert_eq!(one["data"][0]["zoneId"], 200001);
    assert_eq!(one["data"][0]["name"], "上海一区");
    let cluster = c
        .ok(
            "DescribeRedisProduct",
            &[("zoneIds.0", "100002"), ("typeId", "1")],
        )
        .await;
    // The cluster edition: memSize is the total of its shards (up to 3 of 61440 MB).
    assert_eq!(
        cluster["data"][0]["types"],
        serde_json::json!({"1": {"type": 1, "typeName": "集群版", "minMemSize": 1024,
            "maxMemSize": 184320, "minBuyNum": 1, "maxBuyNum": 10}}),
        "{cluster}"
    );
    c.err(
        "DescribeRedisProduct",
        &[("typeId", "3")],
        4000,
        Some(11201),
    )
    .await;
    c.err(
        "DescribeRedisProduct",
        &[("zoneIds.0", "abc")],
        4000,
        Some(11201),
    )
    .await;

    // Whatever the product lists can be priced at its limits, and nothing past them.
    for zone in zones {
        let zone_id = zone["zoneId"].as_i64().unwrap().to_string();
        let t = &zone["types"]["2"];
        assert_eq!(t["type"], 2, "{zone}");
        assert_eq!(t["typeName"], "主从版");
        let min_mem = t["minMemSize"].as_i64().unwrap();
        let max_mem = t["maxMemSize"].as_i64().unwrap();
        let min_num = t["minBuyNum"].as_i64().unwrap();
        let max_num = t["maxBuyNum"].as_i64().unwrap();
        let ask = |mem: i64, num: i64| {
            let c = c.clone();
            let zone_id = zone_id.clone();
            async move {
                c.call(
                    "InquiryRedisPrice",
                    &price_params(&zone_id, "2", &mem.to_string(), &num.to_string(), "1"),
                )
                .await
            }
        };
        let v = ask(min_mem, min_num).await;
        assert_eq!(v["data"]["price"], 8000 * min_mem / 1024 * min_num, "{v}");
        let v = ask(max_mem, max_num).await;
        assert_eq!(v["data"]["price"], 8000 * max_mem / 1024 * max_num, "{v}");
        let v = ask(max_mem + 1024, 1).await;
        assert!(v["message"].as_str().unwrap().starts_with("(11063)"), "{v}");
        let v = ask(min_mem, max_num + 1).await;
        assert!(v["message"].as_str().unwrap().starts_with("(11064)"), "{v}");
        if min_mem > 1024 {
            let v = ask(min_mem - 1024, 1).await;
            assert!(v["message"].as_str().unwrap().starts_with("(11063)"), "{v}");
        }
    }
}

// ---------------------------------------------------------------- InquiryRedisPrice

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inquiry_price_follows_the_catalog_and_refuses_what_is_not_sold() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let before = balance(&crsd, app).await;

    for (mem, num, period, want) in [
        ("2048", "2", "3", 96000),
        ("1024", "1", "2", 16000),
        ("1024", "1", "1", 8000),
        ("4096", "1", "12", 8000 * 4 * 12),
        ("61440", "10", "36", 8000 * 60 * 36 * 10),
    ] {
        let v = c
            .ok(
                "InquiryRedisPrice",
                &price_params("100002", "2", mem, num, period),
            )
            .await;
        assert_eq!(
            v["data"]["price"], want,
            "{mem} MB x {num} for {period} months: {v}"
        );
    }
    // Every zone of the catalog sells the same product at the same price.
    let v = c
        .ok(
            "InquiryRedisPrice",
            &price_params("200001", "2", "2048", "2", "3"),
        )
        .await;
    assert_eq!(v["data"]["price"], 96000);
    // The cluster edition: memSize is the total, priced as the memory of its shards.
    let v = c
        .ok(
            "InquiryRedisPrice",
            &price_params("100002", "1", "3072", "1", "1"),
        )
        .await;
    assert_eq!(v["data"]["price"], 8000 * 3);

    let refusals: Vec<(Pairs, i64, i64)> = vec![
        (price_params("100002", "3", "1024", "1", "1"), 4000, 11053),
        (price_params("100002", "0", "1024", "1", "1"), 4000, 11053),
        (price_params("1", "2", "1024", "1", "1"), 5100, 10000),
        // A cluster larger than its shards may be.
        (price_params("100002", "1", "307200", "1", "1"), 4000, 11063),
        (price_params("100002", "2", "1000", "1", "1"), 4000, 10703),
        (price_params("100002", "2", "0", "1", "1"), 4000, 10703),
        (price_params("100002", "2", "102400", "1", "1"), 4000, 11063),
        (price_params("100002", "2", "1024", "0", "1"), 4000, 11064),
        (price_params("100002", "2", "1024", "11", "1"), 4000, 11064),
        (price_params("100002", "2", "1024", "1", "0"), 4000, 11066),
        (price_params("100002", "2", "1024", "1", "37"), 4000, 11065),
        // 13 lies between the limits but is not one of the documented periods.
        (price_params("100002", "2", "1024", "1", "13"), 4000, 11201),
        (price_params("100002", "2", "abc", "1", "1"), 4000, 11201),
    ];
    for (params, code, module) in refusals {
        let v = c
            .err("InquiryRedisPrice", &params, code, Some(module))
            .await;
        assert!(v.get("data").is_none(), "a refusal carries no price: {v}");
    }

    // Each of the five parameters is required.
    let full = price_params("100002", "2", "1024", "1", "1");
    for missing in ["zoneId", "typeId", "memSize", "goodsNum", "period"] {
        let params: Vec<(&str, &str)> = full
            .iter()
            .copied()
            .filter(|(k, _)| *k != missing)
            .collect();
        let v = c.err("InquiryRedisPrice", &params, 4000, None).await;
        assert_eq!(v["codeDesc"], "MissingParameter", "{missing}: {v}");
        assert!(
            v["message"].as_str().unwrap().contains(missing),
            "the message names {missing}: {v}"
        );
    }

    // Asking costs nothing and creates nothing.
    assert_eq!(balance(&crsd, app).await, before);
    assert_eq!(total_count(&c).await, 0);
}

// ---------------------------------------------------------------- CreateRedis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_two_instances_charges_the_price_and_delivers_both() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let before = balance(&crsd, app).await;

    let price = c
        .ok(
            "InquiryRedisPrice",
            &price_params("100002", "2", "2048", "2", "1"),
        )
        .await["data"]["price"]
        .as_i64()
        .unwrap();
    assert_eq!(price, 32000);

    let created = c
        .ok(
            "CreateRedis",
            &create_params("2", "2048", "2", "1", PASSWORD),
        )
        .await;
    let deal_id = created["data"]["dealId"]
        .as_str()
        .expect("dealId is a string")
        .to_string();
    // The money moves with the order, before delivery.
    assert_eq!(balance(&crsd, app).await, before - price);

    let ids = c.wait_deal(&deal_id).await;
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_ne!(ids[0], ids[1]);

    let d = deal(&c, &deal_id).await;
    assert_eq!(d["dealId"], deal_id.as_str());
    assert_eq!(d["status"], 4, "{d}");
    assert_eq!(d["description"], "发货成功");
    assert_eq!(d["price"], price);
    assert_eq!(d["goodsNum"], 2);
    assert_eq!(d["zoneId"], 100002);
    assert_eq!(d["creator"], main_uin(&crsd).as_str());
    assert!(!d["dealName"].as_str().unwrap().is_empty(), "{d}");
    let g = &d["goodsDetail"];
    assert_eq!(g["memSize"], 2048, "{d}");
    assert_eq!(g["timeSpan"], 1);
    assert_eq!(g["timeUnit"], "m");
    let deal_ids: Vec<&str> = g["redisIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(deal_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let creat = parse_time(&crsd, &d["creatTime"]);
    assert_eq!(
        parse_time(&crsd, &d["overdueTime"]) - creat,
        chrono::Duration::days(15),
        "{d}"
    );
    assert!(parse_time(&crsd, &d["endTime"]) >= creat, "{d}");

    // Delivery charged nothing more.
    assert_eq!(balance(&crsd, app).await, before - price);
    assert_eq!(total_count(&c).await, 2);

    let mut ports = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        let inst = c.describe_one(id).await;
        assert_eq!(inst["status"], 2, "{inst}");
        assert_eq!(inst["statusDesc"], "实例运行中");
        assert_eq!(inst["size"], 2048);
        assert_eq!(inst["typeId"], 2);
        assert_eq!(inst["zoneId"], 100002);
        assert_eq!(inst["autoRenewFlag"], 0);
        let created_at = parse_time(&crsd, &inst["createtime"]);
        assert_eq!(
            inst["deadlineTime"],
            fmt_time(
                &crsd,
                created_at.checked_add_months(Months::new(1)).unwrap()
            )
            .as_str(),
            "a one-month purchase: {inst}"
        );
        ports.push(inst["port"].as_u64().unwrap());

        let mut con = conn(&inst, PASSWORD).await;
        assert_eq!(maxmemory(&mut con).await, 2 * GB);
        set(&mut con, "who", &format!("instance-{n}")).await;
        assert!(
            redis_conn(
                inst["wanIp"].as_str().unwrap(),
                inst["port"].as_u64().unwrap() as u16,
                "Wrong2password"
            )
            .await
            .is_err(),
            "a wrong password fails AUTH"
        );
    }
    assert_ne!(ports[0], ports[1], "each instance has its own port");
    // Two separate redis-servers: each keeps its own value.
    for (n, id) in ids.iter().enumerate() {
        let inst = c.describe_one(id).await;
        let mut con = conn(&inst, PASSWORD).await;
        assert_eq!(
            get(&mut con, "who").await.as_deref(),
            Some(format!("instance-{n}").as_str())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refusals_create_nothing_and_charge_nothing() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let before = balance(&crsd, app).await;

    // Passwords.
    c.err(
        "CreateRedis",
        &create_params("2", "1024", "1", "1", ""),
        4000,
        Some(10501),
    )
    .await;
    let without_password = price_params("100002", "2", "1024", "1", "1");
    c.err("CreateRedis", &without_password, 4000, Some(10501))
        .await;
    for bad in [
        "abc123",            // too short
        "abcdefgh12345678x", // too long
        "abcdefghij",        // letters only
        "1234567890",        // digits only
        "abcd$1234",         // $ is not an allowed character
        "abcd 1234",
    ] {
        let v = c
            .err(
                "CreateRedis",
                &create_params("2", "1024", "1", "1", bad),
                4000,
                Some(11058),
            )
            .await;
        assert_eq!(v["codeDesc"], "PasswordRuleError", "{bad}: {v}");
    }

    // The catalog's limits hold for CreateRedis too (a cluster's memSize is its total).
    let v = c
        .err(
            "CreateRedis",
            &create_params("1", "307200", "1", "1", PASSWORD),
            4000,
            Some(11063),
        )
        .await;
    assert!(v.get("data").is_none(), "{v}");
    for (params, code, module) in [
        (create_params("3", "1024", "1", "1", PASSWORD), 4000, 11053),
        (create_params("2", "1000", "1", "1", PASSWORD), 4000, 10703),
        (
            create_params("2", "102400", "1", "1", PASSWORD),
            4000,
            11063,
        ),
        (create_params("2", "1024", "0", "1", PASSWORD), 4000, 11064),
        (create_params("2", "1024", "11", "1", PASSWORD), 4000, 11064),
        (create_params("2", "1024", "1", "0", PASSWORD), 4000, 11066),
        (create_params("2", "1024", "1", "37", PASSWORD), 4000, 11065),
    ] {
        c.err("CreateRedis", &params, code, Some(module)).await;
    }
    let mut other_zone = create_params("2", "1024", "1", "1", PASSWORD);
    other_zone[0] = ("zoneId", "999999");
    c.err("CreateRedis", &other_zone, 5100, Some(10000)).await;

    assert_eq!(
        total_count(&c).await,
        0,
        "no refused order left an instance"
    );
    assert_eq!(
        balance(&crsd, app).await,
        before,
        "no refused order cost money"
    );

    // An account that cannot pay: 100 cents for an 8000-cent order.
    let (poor, poor_app) = other_account(&crsd, 100).await;
    let v = poor
        .err(
            "CreateRedis",
            &create_params("2", "1024", "1", "1", PASSWORD),
            5300,
            Some(100207),
        )
        .await;
    assert_eq!(
        v["codeDesc"], "OperationConstraints.AccountBalanceNotEnough",
        "{v}"
    );
    assert_eq!(total_count(&poor).await, 0);
    assert_eq!(balance(&crsd, poor_app).await, 100);
    // One cent short is short.
    let (short, short_app) = other_account(&crsd, 7999).await;
    short
        .err(
            "CreateRedis",
            &create_params("2", "1024", "1", "1", PASSWORD),
            5300,
            Some(100207),
        )
        .await;
    assert_eq!(total_count(&short).await, 0);
    assert_eq!(balance(&crsd, short_app).await, 7999);
    // Enough for one instance is not enough for two: nothing is bought, not even one.
    let (half, half_app) = other_account(&crsd, 12000).await;
    half.err(
        "CreateRedis",
        &create_params("2", "1024", "2", "1", PASSWORD),
        5300,
        Some(100207),
    )
    .await;
    assert_eq!(total_count(&half).await, 0);
    assert_eq!(balance(&crsd, half_app).await, 12000);
    // Nothing of that reached the first account either.
    assert_eq!(total_count(&c).await, 0);
    assert_eq!(balance(&crsd, app).await, before);

    // Two orders at once with money for one: exactly one is bought.
    let (racer, racer_app) = other_account(&crsd, 8000 + 100).await;
    let params = create_params("2", "1024", "1", "1", PASSWORD);
    let (a, b) = tokio::join!(
        racer.call("CreateRedis", &params),
        racer.call("CreateRedis", &params)
    );
    let codes = [a["code"].as_i64().unwrap(), b["code"].as_i64().unwrap()];
    assert!(codes.contains(&0) && codes.contains(&5300), "{a} {b}");
    let won = if a["code"] == 0 { &a } else { &b };
    racer
        .wait_deal(won["data"]["dealId"].as_str().unwrap())
        .await;
    assert_eq!(balance(&crsd, racer_app).await, 100);
    assert_eq!(total_count(&racer).await, 1);

    // The other account can buy what it can pay for, to the cent.
    let (exact, exact_app) = other_account(&crsd, 8000).await;
    let inst = exact.create(PASSWORD, 1).await;
    assert_eq!(inst.len(), 1);
    assert_eq!(balance(&crsd, exact_app).await, 0);
    assert_eq!(total_count(&exact).await, 1);
    assert_eq!(total_count(&c).await, 0, "accounts do not see each other's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_without_free_ports_refuses_and_charges_nothing() {
    // Three ports: one instance (master and replica) fits, a second does not.
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.instances.port_max = cfg.instances.port_min + 2;
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let before = balance(&crsd, app).await;

    let v = c
        .err(
            "CreateRedis",
            &create_params("2", "1024", "2", "1", PASSWORD),
            5200,
            None,
        )
        .await;
    assert_eq!(v["codeDesc"], "ResourceInsufficient", "{v}");
    assert_eq!(total_count(&c).await, 0);
    assert_eq!(balance(&crsd, app).await, before);

    let inst = c.create(PASSWORD, 1).await.remove(0);
    assert_eq!(balance(&crsd, app).await, before - 8000);
    c.err(
        "CreateRedis",
        &create_params("2", "1024", "1", "1", PASSWORD),
        5200,
        None,
    )
    .await;
    assert_eq!(total_count(&c).await, 1);
    assert_eq!(balance(&crsd, app).await, before - 8000);
    let mut con = conn(&inst, PASSWORD).await;
    set(&mut con, "k", "v").await;
}

// ---------------------------------------------------------------- RenewRedis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_moves_the_deadline_and_records_the_old_one() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();
    let mut con = conn(&inst, PASSWORD).await;
    set(&mut con, "k", "v").await;
    let pid = process_id(&mut con).await;
    let old_deadline = inst["deadlineTime"].as_str().unwrap().to_string();
    let before = balance(&crsd, app).await;

    let v = c
        .ok("RenewRedis", &[("redisId", &id), ("period", "3")])
        .await;
    let deal_id = v["data"]["dealId"].as_str().expect("a string").to_string();
    assert_eq!(balance(&crsd, app).await, before - 24000);

    let d = deal(&c, &deal_id).await;
    assert_eq!(d["status"], 4, "a renewal is delivered at once: {d}");
    assert_eq!(d["description"], "发货成功");
    assert_eq!(d["price"], 24000);
    assert_eq!(d["goodsNum"], 1);
    let g = &d["goodsDetail"];
    assert_eq!(g["curDeadline"], old_deadline.as_str(), "{d}");
    assert_eq!(g["memSize"], 1024);
    assert_eq!(g["timeSpan"], 3);
    assert_eq!(g["timeUnit"], "m");
    assert_eq!(g["redisIds"], serde_json::json!([id]));

    let after = c.describe_one(&id).await;
    let want = parse_time(&crsd, &Value::String(old_deadline.clone()))
        .checked_add_months(Months::new(3))
        .unwrap();
    assert_eq!(
        after["deadlineTime"],
        fmt_time(&crsd, want).as_str(),
        "{after}"
    );
    assert_eq!(after["status"], 2, "a running instance keeps running");
    assert_eq!(process_id(&mut con).await, pid, "renewal restarts nothing");
    assert_eq!(get(&mut con, "k").await.as_deref(), Some("v"));
    let renewed_deadline = after["deadlineTime"].clone();

    // Refusals: each leaves deadline and balance as they are.
    let charged = balance(&crsd, app).await;
    c.err(
        "RenewRedis",
        &[("redisId", "crs-nosuch01"), ("period", "1")],
        5000,
        Some(10701),
    )
    .await;
    c.err(
        "RenewRedis",
        &[("redisId", &id), ("period", "0")],
        4000,
        Some(11066),
    )
    .await;
    c.err(
        "RenewRedis",
        &[("redisId", &id), ("period", "37")],
        4000,
        Some(11065),
    )
    .await;
    c.err("RenewRedis", &[("period", "1")], 4000, None).await;
    c.err("RenewRedis", &[("redisId", &id)], 4000, None).await;

    // Another account's instance does not exist for the caller, either way round; and an
    // account with too little money cannot renew its own.
    let (other, other_app) = other_account(&crsd, 8000 + 50).await;
    let theirs = other.create(PASSWORD, 1).await.remove(0);
    let their_id = theirs["redisId"].as_str().unwrap();
    assert_eq!(balance(&crsd, other_app).await, 50);
    other
        .err(
            "RenewRedis",
            &[("redisId", &id), ("period", "1")],
            5000,
            Some(10701),
        )
        .await;
    c.err(
        "RenewRedis",
        &[("redisId", their_id), ("period", "1")],
        5000,
        Some(10701),
    )
    .await;
    let v = other
        .err(
            "RenewRedis",
            &[("redisId", their_id), ("period", "1")],
            5300,
            Some(100207),
        )
        .await;
    assert_eq!(
        v["codeDesc"],
        "OperationConstraints.AccountBalanceNotEnough"
    );
    assert_eq!(balance(&crsd, other_app).await, 50);
    assert_eq!(
        other.describe_one(their_id).await["deadlineTime"],
        theirs["deadlineTime"]
    );

    assert_eq!(balance(&crsd, app).await, charged);
    assert_eq!(c.describe_one(&id).await["deadlineTime"], renewed_deadline);

    // Two renewals at once both count, one after the other.
    let params = [("redisId", id.as_str()), ("period", "1")];
    let (a, b) = tokio::join!(c.call("RenewRedis", &params), c.call("RenewRedis", &params));
    assert_eq!(
        (a["code"].clone(), b["code"].clone()),
        (0.into(), 0.into()),
        "{a} {b}"
    );
    let mut curs = Vec::new();
    for v in [&a, &b] {
        let d = deal(&c, v["data"]["dealId"].as_str().unwrap()).await;
        curs.push(parse_time(&crsd, &d["goodsDetail"]["curDeadline"]));
    }
    curs.sort();
    let base = parse_time(&crsd, &renewed_deadline);
    assert_eq!(curs[0], base);
    assert_eq!(curs[1], base.checked_add_months(Months::new(1)).unwrap());
    let renewed_deadline = c.describe_one(&id).await["deadlineTime"].clone();
    assert_eq!(
        renewed_deadline,
        fmt_time(&crsd, base.checked_add_months(Months::new(2)).unwrap()).as_str()
    );
    assert_eq!(balance(&crsd, app).await, charged - 16000);
    let charged = charged - 16000;

    // A second renewal extends from the new deadline.
    let v = c
        .ok("RenewRedis", &[("redisId", &id), ("period", "12")])
        .await;
    let d = deal(&c, v["data"]["dealId"].as_str().unwrap()).await;
    assert_eq!(d["goodsDetail"]["curDeadline"], renewed_deadline);
    assert_eq!(d["price"], 8000 * 12);
    assert_eq!(balance(&crsd, app).await, charged - 8000 * 12);
    let want = parse_time(&crsd, &renewed_deadline)
        .checked_add_months(Months::new(12))
        .unwrap();
    assert_eq!(
        c.describe_one(&id).await["deadlineTime"],
        fmt_time(&crsd, want).as_str()
    );
}

// ---------------------------------------------------------------- Upgrade

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_raises_maxmemory_live_and_keeps_the_data() {
    let crsd = TestCrsd::start().await;
    let svc = service(&crsd);
    let c = crsd.client();
    let app = main_app_id(&crsd);
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();
    let deadline = parse_time(&crsd, &inst["deadlineTime"]);

    let mut con = conn(&inst, PASSWORD).await;
    for i in 0..200 {
        set(&mut con, &format!("key:{i}"), &format!("value-{i}")).await;
    }
    let pid = process_id(&mut con).await;
    assert_eq!(maxmemory(&mut con).await, GB);
    let stored = svc.store().instance(&id).await.unwrap().unwrap();
    let mut replica = redis_conn("127.0.0.1", common::replica_port(&stored), PASSWORD)
        .await
        .expect("the replica takes the same password");
    let replica_pid = process_id(&mut replica).await;

    // Pro rata of the time left: a whole month now, a third less after ten days.
    let quote = |mem: &'static str| {
        let c = c.clone();
        let id = id.clone();
        async move {
            c.ok(
                "UpgradeRedisInquiryPrice",
                &[("redisId", &id), ("memSize", mem)],
            )
            .await["data"]["price"]
                .as_i64()
                .expect("an integer price")
        }
    };
    let p2048 = quote("2048").await;
    let want = expected_upgrade_price(1024, 2048, deadline - svc.now());
    assert!(p2048 > 0);
    assert!(
        (p2048 as f64 - want).abs() <= 2.0,
        "{p2048} is not pro rata ({want})"
    );
    let p4096 = quote("4096").await;
    assert!((p4096 - 3 * p2048).abs() <= 2, "{p4096} vs 3 x {p2048}");

    crsd.clock.advance(chrono::Duration::days(10));
    let later = quote("2048").await;
    let want = expected_upgrade_price(1024, 2048, deadline - svc.now());
    assert!(
        (later as f64 - want).abs() <= 2.0,
        "{later} after ten days is not pro rata ({want})"
    );
    assert!(later < p2048 - 2000, "{later} vs {p2048}");

    // Refusals of both actions; nothing changes.
    let before = balance(&crsd, app).await;
    for action in ["UpgradeRedisInquiryPrice", "UpgradeRedis"] {
        c.err(
            action,
            &[("redisId", &id), ("memSize", "1024")],
            5100,
            Some(11057),
        )
        .await;
        c.err(
            action,
            &[("redisId", &id), ("memSize", "3000")],
            4000,
            Some(10703),
        )
        .await;
        c.err(
            action,
            &[("redisId", &id), ("memSize", "102400")],
            4000,
            Some(11063),
        )
        .await;
        c.err(
            action,
            &[("redisId", "crs-nosuch01"), ("memSize", "2048")],
            5000,
            Some(10701),
        )
        .await;
        c.err(action, &[("memSize", "2048")], 4000, None).await;
        c.err(action, &[("redisId", &id)], 4000, None).await;
    }
    assert_eq!(balance(&crsd, app).await, before);
    assert_eq!(c.describe_one(&id).await["size"], 1024);
    assert_eq!(maxmemory(&mut con).await, GB);

    // Upgrade.
    let quoted = quote("2048").await;
    let v = c
        .ok("UpgradeRedis", &[("redisId", &id), ("memSize", "2048")])
        .await;
    let deal_id = v["data"]["dealId"].as_str().expect("a string").to_string();
    let ids = c.wait_deal(&deal_id).await;
    assert_eq!(ids, vec![id.clone()]);
    let d = deal(&c, &deal_id).await;
    assert_eq!(d["status"], 4);
    assert_eq!(d["description"], "发货成功");
    assert_eq!(d["goodsNum"], 1);
    assert_eq!(d["goodsDetail"]["oldMemSize"], 1024, "{d}");
    assert_eq!(d["goodsDetail"]["newMemsize"], 2048, "{d}");
    assert_eq!(d["goodsDetail"]["redisIds"], serde_json::json!([id]));
    let price = d["price"].as_i64().unwrap();
    assert!(
        (price - quoted).abs() <= 1,
        "charged {price}, quoted {quoted}"
    );
    assert_eq!(balance(&crsd, app).await, before - price);

    let after = c.describe_one(&id).await;
    assert_eq!(after["size"], 2048, "{after}");
    assert_eq!(after["status"], 2);
    assert_eq!(
        after["deadlineTime"], inst["deadlineTime"],
        "an upgrade does not move the deadline"
    );
    assert_eq!(maxmemory(&mut con).await, 2 * GB, "raised live");
    assert_eq!(process_id(&mut con).await, pid, "no restart");
    assert_eq!(maxmemory(&mut replica).await, 2 * GB, "the replica too");
    assert_eq!(process_id(&mut replica).await, replica_pid);
    for i in 0..200 {
        assert_eq!(
            get(&mut con, &format!("key:{i}")).await,
            Some(format!("value-{i}"))
        );
    }

    // Now 2048 is the floor; 4096 is quoted for 2 GB less.
    c.err(
        "UpgradeRedis",
        &[("redisId", &id), ("memSize", "2048")],
        5100,
        Some(11057),
    )
    .await;
    let p = quote("4096").await;
    let want = expected_upgrade_price(2048, 4096, deadline - svc.now());
    assert!((p as f64 - want).abs() <= 2.0, "{p} vs {want}");

    // Two upgrades at once: one is bought, the other refused without charge.
    let paid = balance(&crsd, app).await;
    let params = [("redisId", id.as_str()), ("memSize", "4096")];
    let (a, b) = tokio::join!(
        c.call("UpgradeRedis", &params),
        c.call("UpgradeRedis", &params)
    );
    let (won, lost) = if a["code"] == 0 { (&a, &b) } else { (&b, &a) };
    assert_eq!(won["code"], 0, "{a} {b}");
    assert_eq!(lost["code"], 5100, "{a} {b}");
    let m = lost["message"].as_str().unwrap();
    assert!(
        m.starts_with("(10702)") || m.starts_with("(11057)"),
        "{lost}"
    );
    let deal_id = won["data"]["dealId"].as_str().unwrap();
    c.wait_deal(deal_id).await;
    let charged = deal(&c, deal_id).await["price"].as_i64().unwrap();
    assert_eq!(balance(&crsd, app).await, paid - charged);
    assert_eq!(c.describe_one(&id).await["size"], 4096);
    assert_eq!(maxmemory(&mut con).await, 4 * GB);
    let price = price + charged;

    // Another account's instance, and an account that cannot pay.
    let (other, other_app) = other_account(&crsd, 8000 + 50).await;
    let theirs = other.create(PASSWORD, 1).await.remove(0);
    let their_id = theirs["redisId"].as_str().unwrap();
    for action in ["UpgradeRedisInquiryPrice", "UpgradeRedis"] {
        other
            .err(
                action,
                &[("redisId", &id), ("memSize", "4096")],
                5000,
                Some(10701),
            )
            .await;
        c.err(
            action,
            &[("redisId", their_id), ("memSize", "4096")],
            5000,
            Some(10701),
        )
        .await;
    }
    let v = other
        .err(
            "UpgradeRedis",
            &[("redisId", their_id), ("memSize", "2048")],
            5300,
            Some(100207),
        )
        .await;
    assert_eq!(
        v["codeDesc"],
        "OperationConstraints.AccountBalanceNotEnough"
    );
    assert_eq!(balance(&crsd, other_app).await, 50);
    let theirs_after = other.describe_one(their_id).await;
    assert_eq!(theirs_after["size"], 1024);
    assert_eq!(
        theirs_after["status"], 2,
        "a refused upgrade leaves it idle"
    );
    let mut their_con = conn(&theirs_after, PASSWORD).await;
    assert_eq!(maxmemory(&mut their_con).await, GB);
    assert_eq!(c.describe_one(&id).await["size"], 4096);
    assert_eq!(balance(&crsd, app).await, before - price);
}

// ---------------------------------------------------------------- DescribeRedisDealDetail

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deal_detail_lists_several_deals_and_hides_the_rest() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();

    let created = c
        .ok(
            "CreateRedis",
            &create_params("2", "1024", "1", "2", PASSWORD),
        )
        .await;
    let create_deal = created["data"]["dealId"].as_str().unwrap().to_string();
    let id = c.wait_deal(&create_deal).await.remove(0);
    let renew_deal = c
        .ok("RenewRedis", &[("redisId", &id), ("period", "1")])
        .await["data"]["dealId"]
        .as_str()
        .unwrap()
        .to_string();
    let upgrade_deal = c
        .ok("UpgradeRedis", &[("redisId", &id), ("memSize", "2048")])
        .await["data"]["dealId"]
        .as_str()
        .unwrap()
        .to_string();
    c.wait_deal(&upgrade_deal).await;

    let v = c
        .ok(
            "DescribeRedisDealDetail",
            &[
                ("dealIds.0", &create_deal),
                ("dealIds.1", &renew_deal),
                ("dealIds.2", &upgrade_deal),
            ],
        )
        .await;
    let list = v["dealDetails"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v}");
    let got: Vec<&str> = list.iter().map(|d| d["dealId"].as_str().unwrap()).collect();
    assert_eq!(got, [&create_deal, &renew_deal, &upgrade_deal]);
    for d in list {
        assert_eq!(d["status"], 4, "{d}");
        assert_eq!(d["goodsDetail"]["redisIds"], serde_json::json!([id]));
        for field in ["dealName", "creator", "creatTime", "overdueTime", "endTime"] {
            assert!(
                !d[field].as_str().unwrap_or_default().is_empty(),
                "{field}: {d}"
            );
        }
    }
    assert_eq!(list[0]["price"], 16000);
    assert_eq!(list[0]["goodsDetail"]["timeSpan"], 2);
    assert_eq!(list[0]["goodsDetail"]["memSize"], 1024);
    assert_eq!(list[1]["price"], 8000);
    assert_eq!(list[1]["goodsDetail"]["timeSpan"], 1);
    assert!(list[1]["goodsDetail"]["curDeadline"].is_string());
    assert_eq!(list[2]["goodsDetail"]["oldMemSize"], 1024);
    assert_eq!(list[2]["goodsDetail"]["newMemsize"], 2048);
    assert!(list[2]["price"].as_i64().unwrap() > 0);
    // Names are distinct; the order of the request is kept.
    let names: std::collections::HashSet<&str> = list
        .iter()
        .map(|d| d["dealName"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 3);
    let v = c
        .ok(
            "DescribeRedisDealDetail",
            &[("dealIds.0", &upgrade_deal), ("dealIds.1", &create_deal)],
        )
        .await;
    // A renewal after the upgrade is priced and recorded at the new size.
    let second_renewal = c
        .ok("RenewRedis", &[("redisId", &id), ("period", "1")])
        .await["data"]["dealId"]
        .as_str()
        .unwrap()
        .to_string();
    let d = deal(&c, &second_renewal).await;
    assert_eq!(d["price"], 16000, "{d}");
    assert_eq!(d["goodsDetail"]["memSize"], 2048, "{d}");
    assert_eq!(v["dealDetails"][0]["dealId"], upgrade_deal.as_str());
    assert_eq!(v["dealDetails"][1]["dealId"], create_deal.as_str());

    // Unknown ids, other accounts' deals, and a mix: 11059.
    for unknown in ["999999", "0", "-1", "abc"] {
        let v = c
            .err(
                "DescribeRedisDealDetail",
                &[("dealIds.0", unknown)],
                5000,
                Some(11059),
            )
            .await;
        assert_eq!(v["codeDesc"], "DealIdNotFound");
    }
    c.err(
        "DescribeRedisDealDetail",
        &[("dealIds.0", &create_deal), ("dealIds.1", "999999")],
        5000,
        Some(11059),
    )
    .await;
    c.err("DescribeRedisDealDetail", &[], 4000, None).await;

    let (other, _) = other_account(&crsd, 100_000).await;
    let their_deal = other
        .ok(
            "CreateRedis",
            &create_params("2", "1024", "1", "1", PASSWORD),
        )
        .await["data"]["dealId"]
        .as_str()
        .unwrap()
        .to_string();
    other.wait_deal(&their_deal).await;
    for (client, deal_id) in [(&other, &create_deal), (&c, &their_deal)] {
        client
            .err(
                "DescribeRedisDealDetail",
                &[("dealIds.0", deal_id)],
                5000,
                Some(11059),
            )
            .await;
    }
}
