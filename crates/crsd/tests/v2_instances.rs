//! The instance side of the v2 API end to end (real HTTP, real redis-server, real SQLite):
//! DescribeRedis, ModifyRedisName, ModfiyRedisPassword / ModifyRedisPassword,
//! ResetRedisPassword, ClearRedis, ModifyRedisProject, DescribeTaskInfo and GetRedisTaskList.
//! What an action changes is checked where it lands (redis itself, the listings); what it
//! refuses is checked to have changed nothing.

mod common;

use chrono::Months;
use common::{main_app_id, other_account, parse_time, redis_conn, service, TestCrsd, V2Client};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use std::time::{Duration, Instant};

const PASSWORD: &str = "49A2d!e@f12e";
const NEW_PASSWORD: &str = "12D3E@!r5ed";

// ---------------------------------------------------------------- helpers

fn id_of(inst: &Value) -> String {
    inst["redisId"].as_str().unwrap().to_string()
}

/// CreateRedis of one 1024 MB instance for a month; returns the deal id (not waited for).
async fn order_one(c: &V2Client) -> String {
    let v = c
        .ok(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", "1"),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await;
    v["data"]["dealId"].as_str().unwrap().to_string()
}

/// A refusal with its common code, module code (in `message`) and `codeDesc`.
async fn refused(
    c: &V2Client,
    action: &str,
    params: &[(&str, &str)],
    code: i64,
    module: Option<i64>,
    desc: &str,
) -> Value {
    let v = c.err(action, params, code, module).await;
    assert_eq!(v["codeDesc"], desc, "{action}: {v}");
    assert!(v["message"].is_string(), "{v}");
    assert!(v.get("data").is_none(), "a refusal carries no data: {v}");
    v
}

/// DescribeRedis with `limit=10&offset=0` plus `extra`.
async fn describe(c: &V2Client, extra: &[(&str, &str)]) -> Value {
    let mut params = vec![("limit", "10"), ("offset", "0")];
    params.extend_from_slice(extra);
    c.ok("DescribeRedis", &params).await
}

fn listed_ids(v: &Value) -> Vec<String> {
    v["data"]["redisSet"]
        .as_array()
        .unwrap_or_else(|| panic!("data.redisSet is an array: {v}"))
        .iter()
        .map(id_of)
        .collect()
}

/// GetRedisTaskList with `limit=20&offset=0` plus `extra`.
async fn tasks(c: &V2Client, extra: &[(&str, &str)]) -> Value {
    let mut params = vec![("limit", "20"), ("offset", "0")];
    params.extend_from_slice(extra);
    c.ok("GetRedisTaskList", &params).await
}

fn task_set(v: &Value) -> Vec<Value> {
    v["data"]["redisTaskSet"]
        .as_array()
        .unwrap_or_else(|| panic!("data.redisTaskSet is an array: {v}"))
        .clone()
}

fn task_names(v: &Value) -> Vec<String> {
    task_set(v)
        .iter()
        .map(|t| t["taskName"].as_str().unwrap().to_string())
        .collect()
}

fn request_id(v: &Value) -> i64 {
    let id = &v["data"]["requestId"];
    assert!(id.is_u64(), "data.requestId is an unsigned integer: {v}");
    id.as_i64().unwrap()
}

/// Where the master (as DescribeRedis shows it) and the replica (crsd's record) listen.
async fn nodes(crsd: &TestCrsd, inst: &Value) -> [(String, u16); 2] {
    let stored = service(crsd)
        .store()
        .instance(&id_of(inst))
        .await
        .unwrap()
        .unwrap();
    let host = inst["wanIp"].as_str().unwrap().to_string();
    [
        (host.clone(), inst["port"].as_u64().unwrap() as u16),
        (host, common::replica_port(&stored)),
    ]
}

async fn auths(node: &(String, u16), password: &str) -> bool {
    match redis_conn(&node.0, node.1, password).await {
        Ok(mut c) => redis::cmd("PING")
            .query_async::<String>(&mut c)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// The password that AUTHs on both nodes, and that `not` fails on both.
async fn assert_password(nodes: &[(String, u16); 2], good: &str, not: &[&str]) {
    for node in nodes {
        assert!(auths(node, good).await, "{good} must AUTH on {node:?}");
        for bad in not {
            assert!(!auths(node, bad).await, "{bad} must not AUTH on {node:?}");
        }
    }
}

async fn conn(node: &(String, u16), password: &str) -> MultiplexedConnection {
    redis_conn(&node.0, node.1, password)
        .await
        .unwrap_or_else(|e| panic!("AUTH on {node:?}: {e}"))
}

async fn dbsize(conn: &mut MultiplexedConnection) -> i64 {
    redis::cmd("DBSIZE").query_async(conn).await.unwrap()
}

/// Polls `node`'s DBSIZE until it is `want` (a replica follows its master asynchronously).
async fn wait_dbsize(node: &(String, u16), password: &str, want: i64) {
    let mut c = conn(node, password).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let n = dbsize(&mut c).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{node:?} DBSIZE stays {n}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| crsd_core::timefmt::parse(s, chrono_tz::UTC).is_some())
}

// ---------------------------------------------------------------- DescribeRedis

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_redis_counts_pages_filters_and_orders() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let svc = service(&crsd);

    // Three instances created a minute apart (crsd's clock), so creation order is known and
    // differs from id order in general.
    let mut deals = Vec::new();
    let mut created_between = Vec::new();
    for _ in 0..3 {
        let before = svc.now();
        deals.push(order_one(&c).await);
        created_between.push((before, svc.now()));
        crsd.clock.advance(chrono::Duration::minutes(1));
    }
    let mut by_creation = Vec::new(); // oldest first
    for d in &deals {
        by_creation.push(c.wait_deal(d).await.remove(0));
    }
    let [a, b, cc] = [&by_creation[0], &by_creation[1], &by_creation[2]];

    // totalCount and every documented field with its documented JSON type.
    let all = describe(&c, &[]).await;
    assert_eq!(all["totalCount"], 3, "{all}");
    assert_eq!(all["message"], "");
    let set = all["data"]["redisSet"].as_array().unwrap();
    assert_eq!(set.len(), 3);
    for inst in set {
        for key in [
            "redisName",
            "redisId",
            "unVpcId",
            "unSubnetId",
            "statusDesc",
            "wanIp",
            "createtime",
            "typeIdDesc",
            "deadlineTime",
        ] {
            assert!(inst[key].is_string(), "{key} is a string: {inst}");
        }
        for key in [
            "appId",
            "projectId",
            "regionId",
            "zoneId",
            "vpcId",
            "subnetId",
            "status",
            "port",
            "size",
            "sizeUsed",
            "typeId",
            "autoRenewFlag",
        ] {
            assert!(inst[key].is_i64(), "{key} is an integer number: {inst}");
        }
        assert_eq!(inst["appId"], main_app_id(&crsd));
        assert_eq!(inst["projectId"], 0, "default project");
        assert_eq!(inst["regionId"], 1, "广州");
        assert_eq!(inst["zoneId"], 100002);
        assert_eq!(inst["status"], 2);
        assert_eq!(inst["statusDesc"], "实例运行中");
        assert_eq!(inst["size"], 1024);
        assert!(inst["sizeUsed"].as_i64().unwrap() >= 0);
        assert_eq!(inst["typeId"], 2);
        assert_eq!(inst["typeIdDesc"], "主从版");
        assert_eq!(inst["autoRenewFlag"], 0);
        // The seed's example spells two of them differently; both spellings are there.
        assert_eq!(inst["appid"], inst["appId"]);
        assert_eq!(inst["createTime"], inst["createtime"]);
        assert!(inst["port"].as_i64().unwrap() > 0);
        let id = id_of(inst);
        assert!(id.starts_with("crs-"), "{id}");
        let n = by_creation.iter().position(|x| *x == id).unwrap();
        let created = parse_time(&crsd, &inst["createtime"]);
        let (lo, hi) = created_between[n];
        assert!(
            created >= lo - chrono::Duration::seconds(1) && created <= hi,
            "createtime {created} not within the CreateRedis call [{lo}, {hi}]"
        );
        assert_eq!(
            parse_time(&crsd, &inst["deadlineTime"]),
            parse_time(&crsd, &inst["createtime"])
                .checked_add_months(Months::new(1))
                .unwrap(),
            "one month bought: {inst}"
        );
        // The address works.
        let node = (
            inst["wanIp"].as_str().unwrap().to_string(),
            inst["port"].as_u64().unwrap() as u16,
        );
        assert!(auths(&node, PASSWORD).await);
    }

    // Paging over the three (a fixed order so pages are comparable).
    let mut paged = Vec::new();
    for (offset, len) in [("0", 2), ("2", 1), ("3", 0)] {
        let v = c
            .ok(
                "DescribeRedis",
                &[
                    ("limit", "2"),
                    ("offset", offset),
                    ("orderBy", "redisId"),
                    ("orderType", "0"),
                ],
            )
            .await;
        assert_eq!(v["totalCount"], 3, "totalCount ignores paging: {v}");
        let ids = listed_ids(&v);
        assert_eq!(ids.len(), len, "offset {offset}: {v}");
        paged.extend(ids);
    }
    let mut sorted = by_creation.clone();
    sorted.sort();
    assert_eq!(paged, sorted, "pages cover every instance once, in order");

    // Ordering: default is createtime descending.
    let newest_first: Vec<String> = by_creation.iter().rev().cloned().collect();
    assert_eq!(listed_ids(&describe(&c, &[]).await), newest_first);
    for (order_by, order_type, want) in [
        ("createtime", "0", by_creation.clone()),
        ("createtime", "1", newest_first.clone()),
        ("redisId", "0", sorted.clone()),
        ("redisId", "1", sorted.iter().rev().cloned().collect()),
    ] {
        let v = describe(&c, &[("orderBy", order_by), ("orderType", order_type)]).await;
        assert_eq!(
            listed_ids(&v),
            want,
            "orderBy {order_by} orderType {order_type}"
        );
    }
    // orderType alone defaults to descending createtime too.
    let v = describe(&c, &[("orderBy", "createtime")]).await;
    assert_eq!(listed_ids(&v), newest_first, "orderType defaults to 1");

    // Projects: a -> 30, b and c -> 10 in one call, then c -> 20.
    c.ok(
        "ModifyRedisProject",
        &[("redisIds.0", a.as_str()), ("projectId", "30")],
    )
    .await;
    c.ok(
        "ModifyRedisProject",
        &[
            ("redisIds.0", b.as_str()),
            ("redisIds.1", cc.as_str()),
            ("projectId", "10"),
        ],
    )
    .await;
    assert_eq!(c.describe_one(cc).await["projectId"], 10);
    c.ok(
        "ModifyRedisProject",
        &[("redisIds.0", cc.as_str()), ("projectId", "20")],
    )
    .await;
    let v = describe(&c, &[("orderBy", "projectId"), ("orderType", "0")]).await;
    assert_eq!(listed_ids(&v), vec![b.clone(), cc.clone(), a.clone()]);
    let v = describe(&c, &[("orderBy", "projectId"), ("orderType", "1")]).await;
    assert_eq!(listed_ids(&v), vec![a.clone(), cc.clone(), b.clone()]);

    // projectIds.n filter.
    let v = describe(&c, &[("projectIds.0", "10")]).await;
    assert_eq!(v["totalCount"], 1);
    assert_eq!(listed_ids(&v), vec![b.clone()]);
    let v = describe(&c, &[("projectIds.0", "10"), ("projectIds.1", "30")]).await;
    assert_eq!(v["totalCount"], 2);
    let mut got = listed_ids(&v);
    got.sort();
    let mut want = vec![a.clone(), b.clone()];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        describe(&c, &[("projectIds.0", "0")]).await["totalCount"],
        0
    );
    // projectIds with paging: totalCount is the filtered count.
    let v = c
        .ok(
            "DescribeRedis",
            &[
                ("limit", "1"),
                ("offset", "0"),
                ("projectIds.0", "10"),
                ("projectIds.1", "20"),
                ("projectIds.2", "30"),
            ],
        )
        .await;
    assert_eq!(v["totalCount"], 3);
    assert_eq!(listed_ids(&v).len(), 1);

    // redisId and redisName filters.
    let v = describe(&c, &[("redisId", b.as_str())]).await;
    assert_eq!(v["totalCount"], 1);
    assert_eq!(listed_ids(&v), vec![b.clone()]);
    let v = describe(&c, &[("redisId", "crs-nosuch00")]).await;
    assert_eq!(v["totalCount"], 0, "an unknown id filters everything out");
    assert_eq!(listed_ids(&v), Vec::<String>::new());
    c.ok("ModifyRedisName", &[("redisId", a), ("redisName", "alpha")])
        .await;
    c.ok(
        "ModifyRedisName",
        &[("redisId", cc), ("redisName", "gamma")],
    )
    .await;
    let v = describe(&c, &[("redisName", "alpha")]).await;
    assert_eq!(v["totalCount"], 1);
    assert_eq!(listed_ids(&v), vec![a.clone()]);
    assert_eq!(v["data"]["redisSet"][0]["redisName"], "alpha");
    let v = describe(&c, &[("redisName", "delta")]).await;
    assert_eq!(v["totalCount"], 0);
    // Filters combine.
    let v = describe(&c, &[("redisName", "gamma"), ("projectIds.0", "10")]).await;
    assert_eq!(v["totalCount"], 0);
    let v = describe(&c, &[("redisName", "gamma"), ("projectIds.0", "20")]).await;
    assert_eq!(listed_ids(&v), vec![cc.clone()]);

    // Malformed requests.
    refused(
        &c,
        "DescribeRedis",
        &[("offset", "0")],
        4000,
        None,
        "MissingParameter",
    )
    .await;
    for bad in [
        [("orderBy", "bogus"), ("orderType", "0")],
        [("orderBy", "redisId"), ("orderType", "5")],
        [("projectIds.0", "ten"), ("orderType", "0")],
    ] {
        let mut params = vec![("limit", "10"), ("offset", "0")];
        params.extend_from_slice(&bad);
        refused(
            &c,
            "DescribeRedis",
            &params,
            4000,
            Some(11201),
            "InvalidParameter",
        )
        .await;
    }
    refused(
        &c,
        "DescribeRedis",
        &[("limit", "ten"), ("offset", "0")],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;
    refused(
        &c,
        "DescribeRedis",
        &[("limit", "10"), ("offset", "-1")],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;
}

// ---------------------------------------------------------------- names and projects

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_project_show_everywhere_and_refusals_change_nothing() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = id_of(&inst);
    assert_eq!(
        inst["redisName"],
        id.as_str(),
        "an unnamed instance is named by its id"
    );

    // ModifyRedisName: the seed's example name, then 36 characters (Chinese count as one).
    c.ok(
        "ModifyRedisName",
        &[("redisId", &id), ("redisName", "test_API")],
    )
    .await;
    assert_eq!(c.describe_one(&id).await["redisName"], "test_API");
    let t = tasks(&c, &[]).await;
    assert_eq!(task_names(&t), vec!["newInstance"]);
    assert_eq!(task_set(&t)[0]["redisName"], "test_API", "{t}");
    let long36 = "测".repeat(36);
    c.ok(
        "ModifyRedisName",
        &[("redisId", &id), ("redisName", &long36)],
    )
    .await;
    assert_eq!(c.describe_one(&id).await["redisName"], long36.as_str());
    let name = "测试API专用-1_x";
    c.ok("ModifyRedisName", &[("redisId", &id), ("redisName", name)])
        .await;
    let t = tasks(&c, &[]).await;
    assert_eq!(task_set(&t)[0]["redisName"], name, "{t}");
    assert_eq!(tasks(&c, &[("redisName", name)]).await["totalCount"], 1);

    // Refusals leave the name alone.
    let long37 = "a".repeat(37);
    let long37_cn = "测".repeat(37);
    for bad in [long37.as_str(), long37_cn.as_str()] {
        refused(
            &c,
            "ModifyRedisName",
            &[("redisId", &id), ("redisName", bad)],
            4000,
            Some(11211),
            "InstanceNameExceedMaxLimit",
        )
        .await;
    }
    for bad in ["a b", "", "bad!", "名，字", "a.b"] {
        refused(
            &c,
            "ModifyRedisName",
            &[("redisId", &id), ("redisName", bad)],
            4000,
            Some(11212),
            "InstanceNameRuleError",
        )
        .await;
    }
    refused(
        &c,
        "ModifyRedisName",
        &[("redisId", "crs-nosuch00"), ("redisName", "fine")],
        5000,
        Some(10701),
        "InstanceNotExists",
    )
    .await;
    refused(
        &c,
        "ModifyRedisName",
        &[("redisName", "fine")],
        4000,
        None,
        "MissingParameter",
    )
    .await;
    assert_eq!(c.describe_one(&id).await["redisName"], name);

    // ModifyRedisProject: the seed's example project id.
    c.ok(
        "ModifyRedisProject",
        &[("redisIds.0", &id), ("projectId", "1004306")],
    )
    .await;
    assert_eq!(c.describe_one(&id).await["projectId"], 1004306);
    let v = describe(&c, &[("projectIds.0", "1004306")]).await;
    assert_eq!(listed_ids(&v), vec![id.clone()]);
    assert_eq!(
        describe(&c, &[("projectIds.0", "0")]).await["totalCount"],
        0
    );
    let t = tasks(&c, &[]).await;
    assert_eq!(task_set(&t)[0]["projectId"], 1004306, "{t}");

    // One unknown id in the list: refused, and the known one keeps its project.
    for ids in [[id.as_str(), "crs-nosuch00"], ["crs-nosuch00", id.as_str()]] {
        refused(
            &c,
            "ModifyRedisProject",
            &[
                ("redisIds.0", ids[0]),
                ("redisIds.1", ids[1]),
                ("projectId", "7"),
            ],
            5000,
            Some(10701),
            "InstanceNotExists",
        )
        .await;
    }
    assert_eq!(c.describe_one(&id).await["projectId"], 1004306);
    assert_eq!(
        describe(&c, &[("projectIds.0", "7")]).await["totalCount"],
        0
    );
    refused(
        &c,
        "ModifyRedisProject",
        &[("redisIds.0", &id)],
        4000,
        None,
        "MissingParameter",
    )
    .await;
    refused(
        &c,
        "ModifyRedisProject",
        &[("projectId", "7")],
        4000,
        None,
        "MissingParameter",
    )
    .await;
    for bad in ["-1", "seven"] {
        refused(
            &c,
            "ModifyRedisProject",
            &[("redisIds.0", &id), ("projectId", bad)],
            4000,
            Some(11201),
            "InvalidParameter",
        )
        .await;
    }
    let after = c.describe_one(&id).await;
    assert_eq!(after["projectId"], 1004306);
    assert_eq!(after["redisName"], name);
    assert_eq!(after["status"], 2);
    assert_eq!(tasks(&c, &[]).await["totalCount"], 1, "no task was made");
}

// ---------------------------------------------------------------- passwords

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_changes_reach_both_nodes_and_refusals_change_nothing() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = id_of(&inst);
    let nodes = nodes(&crsd, &inst).await;
    assert_password(&nodes, PASSWORD, &[NEW_PASSWORD]).await;
    {
        let mut m = conn(&nodes[0], PASSWORD).await;
        let _: () = redis::cmd("SET")
            .arg("kept")
            .arg("across password changes")
            .query_async(&mut m)
            .await
            .unwrap();
    }

    // The seed's example: ModfiyRedisPassword (sic) with the old password.
    let v = c
        .ok(
            "ModfiyRedisPassword",
            &[
                ("redisId", &id),
                ("oldPassword", PASSWORD),
                ("password", NEW_PASSWORD),
            ],
        )
        .await;
    let task = request_id(&v);
    assert_eq!(c.wait_task(task).await, 2);
    assert_password(&nodes, NEW_PASSWORD, &[PASSWORD]).await;

    // The corrected spelling works the same.
    let third = "abcd1234";
    let v = c
        .ok(
            "ModifyRedisPassword",
            &[
                ("redisId", &id),
                ("oldPassword", NEW_PASSWORD),
                ("password", third),
            ],
        )
        .await;
    assert_eq!(c.wait_task(request_id(&v)).await, 2);
    assert_password(&nodes, third, &[PASSWORD, NEW_PASSWORD]).await;
    let t = tasks(&c, &[]).await;
    assert_eq!(
        task_names(&t),
        vec!["setPassword", "setPassword", "newInstance"]
    );

    // Refusals: a stale old password, an empty or missing one, a new one breaking the rule,
    // an unknown instance.
    refused(
        &c,
        "ModfiyRedisPassword",
        &[
            ("redisId", &id),
            ("oldPassword", NEW_PASSWORD),
            ("password", "Another123"),
        ],
        5100,
        Some(10502),
        "OldPasswordError",
    )
    .await;
    for old in [Some(""), None] {
        let mut params = vec![("redisId", id.as_str()), ("password", "Another123")];
        if let Some(o) = old {
            params.push(("oldPassword", o));
        }
        refused(
            &c,
            "ModfiyRedisPassword",
            &params,
            4000,
            Some(10501),
            "PasswordEmpty",
        )
        .await;
    }
    for bad in [
        "short1",            // 6 characters
        "abcdefghijk",       // letters only
        "123456789",         // digits only
        "abcd$1234",         // `$` is not one of !@#%^*()
        "abcd 1234",         // nor is a space
        "abcdefgh12345678x", // 17 characters
        "密码密码密码12",    // not ASCII
    ] {
        refused(
            &c,
            "ModfiyRedisPassword",
            &[("redisId", &id), ("oldPassword", third), ("password", bad)],
            4000,
            Some(11058),
            "PasswordRuleError",
        )
        .await;
    }
    refused(
        &c,
        "ModfiyRedisPassword",
        &[
            ("redisId", "crs-nosuch00"),
            ("oldPassword", third),
            ("password", "Another123"),
        ],
        5000,
        Some(10701),
        "InstanceNotExists",
    )
    .await;
    assert_password(&nodes, third, &[PASSWORD, NEW_PASSWORD, "Another123"]).await;
    assert_eq!(
        tasks(&c, &[]).await["totalCount"],
        3,
        "refusals make no task"
    );

    // ResetRedisPassword needs no old password.
    let v = c
        .ok(
            "ResetRedisPassword",
            &[("redisId", &id), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(c.wait_task(request_id(&v)).await, 2);
    assert_password(&nodes, PASSWORD, &[third, NEW_PASSWORD]).await;
    for bad in ["1234567", "abcdefghijk", "abc&12345"] {
        refused(
            &c,
            "ResetRedisPassword",
            &[("redisId", &id), ("password", bad)],
            4000,
            Some(11058),
            "PasswordRuleError",
        )
        .await;
    }
    // An empty password is a malformed parameter (the seed's table for this action has no
    // 10501; crsd uses the code ModfiyRedisPassword documents for it).
    refused(
        &c,
        "ResetRedisPassword",
        &[("redisId", &id), ("password", "")],
        4000,
        Some(10501),
        "PasswordEmpty",
    )
    .await;
    refused(
        &c,
        "ResetRedisPassword",
        &[("redisId", "crs-nosuch00"), ("password", "Another123")],
        5000,
        Some(10701),
        "InstanceNotExists",
    )
    .await;
    assert_password(&nodes, PASSWORD, &[third, "Another123", "1234567"]).await;

    // The data survived every change; the instance is serving and unlocked.
    let mut m = conn(&nodes[0], PASSWORD).await;
    let kept: Option<String> = redis::cmd("GET")
        .arg("kept")
        .query_async(&mut m)
        .await
        .unwrap();
    assert_eq!(kept.as_deref(), Some("across password changes"));
    assert_eq!(c.describe_one(&id).await["status"], 2);
    let t = tasks(&c, &[]).await;
    assert_eq!(t["totalCount"], 4);
    for task in task_set(&t) {
        assert_eq!(task["status"], 2, "{task}");
        assert_eq!(task["progress"], 1, "{task}");
    }
}

// ---------------------------------------------------------------- ClearRedis and the lock

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_needs_the_password_flushes_both_nodes_and_locks_the_instance() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = id_of(&inst);
    let nodes = nodes(&crsd, &inst).await;
    let mut master = conn(&nodes[0], PASSWORD).await;
    for i in 0..50 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut master)
            .await
            .unwrap();
    }
    wait_dbsize(&nodes[1], PASSWORD, 50).await;

    // Refusals flush nothing.
    refused(
        &c,
        "ClearRedis",
        &[("redisId", &id), ("password", NEW_PASSWORD)],
        5100,
        Some(10712),
        "PasswordError",
    )
    .await;
    for params in [
        vec![("redisId", id.as_str()), ("password", "")],
        vec![("redisId", id.as_str())],
    ] {
        refused(
            &c,
            "ClearRedis",
            &params,
            4000,
            Some(10501),
            "PasswordEmpty",
        )
        .await;
    }
    refused(
        &c,
        "ClearRedis",
        &[("redisId", "crs-nosuch00"), ("password", PASSWORD)],
        5000,
        Some(10701),
        "InstanceNotExists",
    )
    .await;
    assert_eq!(dbsize(&mut master).await, 50);
    assert_eq!(tasks(&c, &[]).await["totalCount"], 1, "only newInstance");

    // Hold the flush inside redis: writes (FLUSHALL is one) wait for 1 s while reads and
    // connections go on. The cleanInstance task then holds the instance for that long. (Not
    // longer than Sentinel's down-after, 1.5 s: PING waits during a write pause too, and
    // Sentinel would fail the paused master over.)
    let mut admin = common::admin_conn(&crsd.running.as_ref().unwrap().service, &id).await;
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(1000)
        .arg("WRITE")
        .query_async(&mut admin)
        .await
        .unwrap();
    let held_since = Instant::now();
    let v = c
        .ok("ClearRedis", &[("redisId", &id), ("password", PASSWORD)])
        .await;
    let task = request_id(&v);

    let running = c
        .ok("DescribeTaskInfo", &[("requestId", &task.to_string())])
        .await;
    let s = running["data"]["status"].as_i64().unwrap();
    assert!(s == 0 || s == 1, "the flush waits in redis: {running}");
    let now = c.describe_one(&id).await;
    assert_eq!(now["status"], 1, "{now}");
    assert_eq!(now["statusDesc"], "实例在流程中");
    let t = tasks(&c, &[("taskType.0", "task_cleanInstance")]).await;
    assert_eq!(task_set(&t)[0]["progress"], 0, "{t}");
    refused(
        &c,
        "ModfiyRedisPassword",
        &[
            ("redisId", &id),
            ("oldPassword", PASSWORD),
            ("password", NEW_PASSWORD),
        ],
        5100,
        Some(10707),
        "InstanceLockedError",
    )
    .await;
    refused(
        &c,
        "ResetRedisPassword",
        &[("redisId", &id), ("password", NEW_PASSWORD)],
        5100,
        Some(10707),
        "InstanceLockedError",
    )
    .await;
    refused(
        &c,
        "ClearRedis",
        &[("redisId", &id), ("password", PASSWORD)],
        5100,
        Some(10707),
        "InstanceLockedError",
    )
    .await;
    refused(
        &c,
        "ModifyRedisName",
        &[("redisId", &id), ("redisName", "during")],
        5100,
        Some(10702),
        "InstanceStatusAbnormal",
    )
    .await;
    assert!(
        held_since.elapsed() < Duration::from_millis(900),
        "the refusals above ran while the task held the instance"
    );

    assert_eq!(c.wait_task(task).await, 2);
    assert_eq!(dbsize(&mut master).await, 0, "the master is empty");
    wait_dbsize(&nodes[1], PASSWORD, 0).await;
    let after = c.describe_one(&id).await;
    assert_eq!(after["status"], 2);
    assert_eq!(
        after["redisName"],
        id.as_str(),
        "the refused rename changed nothing"
    );
    assert_password(&nodes, PASSWORD, &[NEW_PASSWORD]).await;
    let t = tasks(&c, &[]).await;
    assert_eq!(task_names(&t), vec!["cleanInstance", "newInstance"]);

    // Unlocked again: the instance takes new tasks, and new data.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query_async(&mut master)
        .await
        .unwrap();
    wait_dbsize(&nodes[1], PASSWORD, 1).await;
    let v = c
        .ok("ClearRedis", &[("redisId", &id), ("password", PASSWORD)])
        .await;
    assert_eq!(c.wait_task(request_id(&v)).await, 2);
    assert_eq!(dbsize(&mut master).await, 0);
    wait_dbsize(&nodes[1], PASSWORD, 0).await;
}

// ---------------------------------------------------------------- tasks

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_info_and_task_list_filter_page_and_stay_private() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let svc = service(&crsd);

    // Two instances at T0, a password reset on the first at T1 = T0 + 1h, a flush at T2.
    let created = c.create(PASSWORD, 2).await;
    let (a, b) = (id_of(&created[0]), id_of(&created[1]));
    c.ok(
        "ModifyRedisName",
        &[("redisId", &a), ("redisName", "测试API专用")],
    )
    .await;
    c.ok(
        "ModifyRedisProject",
        &[("redisIds.0", &a), ("projectId", "5")],
    )
    .await;
    crsd.clock.advance(chrono::Duration::hours(1));
    let t1 = svc.now();
    let v = c
        .ok(
            "ResetRedisPassword",
            &[("redisId", &a), ("password", NEW_PASSWORD)],
        )
        .await;
    let reset = request_id(&v);
    assert_eq!(c.wait_task(reset).await, 2);
    crsd.clock.advance(chrono::Duration::hours(1));
    let v = c
        .ok("ClearRedis", &[("redisId", &a), ("password", NEW_PASSWORD)])
        .await;
    let clear = request_id(&v);
    assert_ne!(clear, reset);

    // DescribeTaskInfo.
    assert_eq!(c.wait_task(clear).await, 2);
    let v = c
        .ok("DescribeTaskInfo", &[("requestId", &reset.to_string())])
        .await;
    assert_eq!(v["data"]["status"], 2);
    assert!(v["data"]["status"].is_i64());
    let unknown = (clear + 1000).to_string();
    refused(
        &c,
        "DescribeTaskInfo",
        &[("requestId", &unknown)],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;
    refused(&c, "DescribeTaskInfo", &[], 4000, None, "MissingParameter").await;
    refused(
        &c,
        "DescribeTaskInfo",
        &[("requestId", "abc")],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;
    let other = other_account(&crsd, 100_000_000).await.0;
    let theirs = refused(
        &other,
        "DescribeTaskInfo",
        &[("requestId", &clear.to_string())],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;
    let nobody = refused(
        &c,
        "DescribeTaskInfo",
        &[("requestId", &unknown)],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;
    assert_eq!(
        theirs["message"]
            .as_str()
            .unwrap()
            .replace(&clear.to_string(), "N"),
        nobody["message"].as_str().unwrap().replace(&unknown, "N"),
        "another account's task is refused exactly like a missing one"
    );
    assert_eq!(tasks(&other, &[]).await["totalCount"], 0);

    // The whole list, newest first, with every documented field.
    let all = tasks(&c, &[]).await;
    assert_eq!(all["totalCount"], 4, "{all}");
    let set = task_set(&all);
    assert_eq!(
        task_names(&all),
        vec!["cleanInstance", "setPassword", "newInstance", "newInstance"]
    );
    for t in &set {
        assert!(is_time(&t["startTime"]), "{t}");
        assert!(
            t["taskName"].is_string() && t["redisName"].is_string(),
            "{t}"
        );
        assert!(t["redisId"].is_string(), "{t}");
        assert!(t["projectId"].is_i64(), "{t}");
        assert_eq!(t["status"], 2, "{t}");
        assert_eq!(t["progress"], 1, "{t}");
    }
    for t in &set[..2] {
        assert_eq!(t["redisId"], a.as_str());
        assert_eq!(t["redisName"], "测试API专用");
        assert_eq!(t["projectId"], 5);
    }
    let mut new_ids: Vec<&str> = set[2..]
        .iter()
        .map(|t| t["redisId"].as_str().unwrap())
        .collect();
    new_ids.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(new_ids, want);
    // startTime is crsd's clock at submission, printed in UTC (the default time zone).
    let set_password_start = set[1]["startTime"].as_str().unwrap().to_string();
    assert!(
        (parse_time(&crsd, &set[1]["startTime"]) - t1)
            .num_seconds()
            .abs()
            <= 1,
        "setPassword started at {set_password_start}, crsd's clock said {t1}"
    );
    assert_eq!(
        set_password_start,
        t1.format("%Y-%m-%d %H:%M:%S").to_string(),
        "UTC"
    );
    let clear_start = set[0]["startTime"].as_str().unwrap().to_string();
    let new_start = set[3]["startTime"].as_str().unwrap().to_string();

    // Filters: instance, name, status, type.
    let count = |v: &Value| v["totalCount"].as_i64().unwrap();
    assert_eq!(count(&tasks(&c, &[("redisId", &a)]).await), 3);
    let v = tasks(&c, &[("redisId", &b)]).await;
    assert_eq!(count(&v), 1);
    assert_eq!(task_names(&v), vec!["newInstance"]);
    assert_eq!(task_set(&v)[0]["redisName"], b.as_str());
    assert_eq!(count(&tasks(&c, &[("redisId", "crs-nosuch00")]).await), 0);
    assert_eq!(count(&tasks(&c, &[("redisName", "测试API专用")]).await), 3);
    assert_eq!(count(&tasks(&c, &[("redisName", "nobody")]).await), 0);
    assert_eq!(count(&tasks(&c, &[("taskStatus.0", "2")]).await), 4);
    assert_eq!(
        count(&tasks(&c, &[("taskStatus.0", "0"), ("taskStatus.1", "1")]).await),
        0
    );
    assert_eq!(
        count(&tasks(&c, &[("taskStatus.0", "3"), ("taskStatus.1", "-1")]).await),
        0
    );
    let v = tasks(&c, &[("taskType.0", "task_cleanInstance")]).await;
    assert_eq!(count(&v), 1);
    assert_eq!(task_names(&v), vec!["cleanInstance"]);
    // The seed's example filter: several types, one status, one instance, by name.
    let v = tasks(
        &c,
        &[
            ("redisId", &a),
            ("redisName", "测试API专用"),
            ("taskStatus.0", "2"),
            ("taskType.0", "task_restoreBackup"),
            ("taskType.1", "task_backupInstance"),
            ("taskType.2", "task_cleanInstance"),
        ],
    )
    .await;
    assert_eq!(task_names(&v), vec!["cleanInstance"]);
    assert_eq!(
        count(&tasks(&c, &[("taskType.0", "task_resizeInstance")]).await),
        0
    );
    assert_eq!(
        count(&tasks(&c, &[("taskType.0", "task_cleanInstance"), ("redisId", &b)]).await),
        0
    );

    // Time window [beginTime, endTime], both ends inclusive at the second the list prints.
    let v = tasks(&c, &[("beginTime", &set_password_start)]).await;
    assert_eq!(task_names(&v), vec!["cleanInstance", "setPassword"]);
    let v = tasks(&c, &[("endTime", &set_password_start)]).await;
    assert_eq!(
        task_names(&v),
        vec!["setPassword", "newInstance", "newInstance"],
        "endTime is inclusive: a task started at {set_password_start} is within it"
    );
    let v = tasks(
        &c,
        &[
            ("beginTime", &set_password_start),
            ("endTime", &set_password_start),
        ],
    )
    .await;
    assert_eq!(task_names(&v), vec!["setPassword"]);
    let v = tasks(&c, &[("beginTime", &new_start), ("endTime", &clear_start)]).await;
    assert_eq!(count(&v), 4);
    let after_all = (svc.now() + chrono::Duration::hours(1))
        .format("%Y-%m-%d %H:%M:%S")
        .to_string();
    assert_eq!(count(&tasks(&c, &[("beginTime", &after_all)]).await), 0);

    // Paging: totalCount is the filtered count, pages follow the same order.
    let mut paged = Vec::new();
    for (offset, len) in [("0", 3), ("3", 1), ("4", 0)] {
        let v = c
            .ok("GetRedisTaskList", &[("limit", "3"), ("offset", offset)])
            .await;
        assert_eq!(v["totalCount"], 4, "{v}");
        assert_eq!(task_set(&v).len(), len, "offset {offset}: {v}");
        paged.extend(task_set(&v));
    }
    assert_eq!(paged, set);
    let v = c
        .ok(
            "GetRedisTaskList",
            &[("limit", "1"), ("offset", "1"), ("redisId", &a)],
        )
        .await;
    assert_eq!(v["totalCount"], 3);
    assert_eq!(task_names(&v), vec!["setPassword"]);

    // Malformed filters.
    for bad in [
        ("taskType.0", "task_bogus"),
        ("taskType.0", "cleanInstance"),
        ("taskStatus.0", "7"),
        ("taskStatus.0", "done"),
        ("beginTime", "2017-02-08"),
        ("endTime", "yesterday"),
        ("offset", "-1"),
    ] {
        refused(
            &c,
            "GetRedisTaskList",
            &[("limit", "10"), bad],
            4000,
            Some(11201),
            "InvalidParameter",
        )
        .await;
    }
    refused(
        &c,
        "GetRedisTaskList",
        &[("offset", "0")],
        4000,
        None,
        "MissingParameter",
    )
    .await;
}

// ---------------------------------------------------------------- accounts are isolated

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_account_sees_nothing_and_changes_nothing() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = id_of(&inst);
    let nodes = nodes(&crsd, &inst).await;
    let mut master = conn(&nodes[0], PASSWORD).await;
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query_async(&mut master)
        .await
        .unwrap();
    let v = c
        .ok(
            "ResetRedisPassword",
            &[("redisId", &id), ("password", PASSWORD)],
        )
        .await;
    let task = request_id(&v);
    assert_eq!(c.wait_task(task).await, 2);
    let before = c.describe_one(&id).await;

    let other = other_account(&crsd, 100_000_000).await.0;
    assert_eq!(describe(&other, &[]).await["totalCount"], 0);
    let v = describe(&other, &[("redisId", &id)]).await;
    assert_eq!(v["totalCount"], 0);
    assert_eq!(listed_ids(&v), Vec::<String>::new());
    assert_eq!(tasks(&other, &[]).await["totalCount"], 0);
    assert_eq!(tasks(&other, &[("redisId", &id)]).await["totalCount"], 0);

    let not_found = |action: &'static str, params: Vec<(&'static str, String)>| {
        let other = other.clone();
        async move {
            let p: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            refused(&other, action, &p, 5000, Some(10701), "InstanceNotExists").await;
        }
    };
    not_found(
        "ModifyRedisName",
        vec![("redisId", id.clone()), ("redisName", "stolen".into())],
    )
    .await;
    not_found(
        "ClearRedis",
        vec![("redisId", id.clone()), ("password", PASSWORD.into())],
    )
    .await;
    not_found(
        "ResetRedisPassword",
        vec![("redisId", id.clone()), ("password", NEW_PASSWORD.into())],
    )
    .await;
    not_found(
        "ModfiyRedisPassword",
        vec![
            ("redisId", id.clone()),
            ("oldPassword", PASSWORD.into()),
            ("password", NEW_PASSWORD.into()),
        ],
    )
    .await;
    not_found(
        "ModifyRedisProject",
        vec![("redisIds.0", id.clone()), ("projectId", "9".into())],
    )
    .await;
    refused(
        &other,
        "DescribeTaskInfo",
        &[("requestId", &task.to_string())],
        4000,
        Some(11201),
        "InvalidParameter",
    )
    .await;

    // Nothing changed for the owner.
    let mut after = c.describe_one(&id).await;
    let mut before = before;
    for v in [&mut before, &mut after] {
        v.as_object_mut().unwrap().remove("sizeUsed");
    }
    assert_eq!(after, before);
    assert_password(&nodes, PASSWORD, &[NEW_PASSWORD]).await;
    let mine: Option<String> = redis::cmd("GET")
        .arg("mine")
        .query_async(&mut master)
        .await
        .unwrap();
    assert_eq!(mine.as_deref(), Some("1"));
    let t = tasks(&c, &[]).await;
    assert_eq!(task_names(&t), vec!["setPassword", "newInstance"]);
}
