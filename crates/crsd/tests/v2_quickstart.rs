//! The seed's quick start, end to end: zones -> product -> price -> create -> deal delivered ->
//! DescribeRedis shows wanIp/port -> redis works with the password and keeps what is written.

mod common;

use common::{redis_conn, TestCrsd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_start_walks_to_a_working_redis() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();

    let zones = c.ok("DescribeRedisZones", &[]).await;
    assert_eq!(zones["data"]["zones"][0]["100002"], "广州二区", "{zones}");

    let product = c
        .ok(
            "DescribeRedisProduct",
            &[("zoneIds.0", "100002"), ("typeId", "2")],
        )
        .await;
    assert_eq!(product["data"][0]["zoneId"], 100002);
    assert_eq!(product["data"][0]["types"]["2"]["minMemSize"], 1024);
    assert!(
        product["data"][0]["types"].get("1").is_none(),
        "cluster is not offered: {product}"
    );

    let price = c
        .ok(
            "InquiryRedisPrice",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", "1"),
                ("period", "2"),
            ],
        )
        .await;
    assert_eq!(price["data"]["price"], 16000);

    let created = c
        .ok(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", "1"),
                ("period", "2"),
                ("password", "49A2d!e@f12e"),
            ],
        )
        .await;
    let deal = created["data"]["dealId"]
        .as_str()
        .expect("dealId is a string")
        .to_string();
    let ids = c.wait_deal(&deal).await;
    assert_eq!(ids.len(), 1);

    let detail = c
        .ok("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
        .await;
    let d = &detail["dealDetails"][0];
    assert_eq!(d["price"], 16000);
    assert_eq!(d["description"], "发货成功");
    assert_eq!(d["goodsDetail"]["timeSpan"], 2);
    assert_eq!(d["goodsDetail"]["timeUnit"], "m");

    let inst = c.describe_one(&ids[0]).await;
    assert_eq!(inst["status"], 2, "{inst}");
    assert_eq!(inst["statusDesc"], "实例运行中");
    assert_eq!(inst["size"], 1024);
    assert_eq!(inst["typeId"], 2);
    let host = inst["wanIp"].as_str().unwrap();
    let port = inst["port"].as_u64().unwrap() as u16;

    let mut conn = redis_conn(host, port, "49A2d!e@f12e")
        .await
        .expect("AUTH with the password");
    let _: () = redis::cmd("SET")
        .arg("greeting")
        .arg("hello")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got: String = redis::cmd("GET")
        .arg("greeting")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, "hello");
    assert_eq!(
        common::info_maxmemory(&mut conn).await,
        1024u64 * 1024 * 1024
    );
    // The user's ACL is not crsd's: no CONFIG, SHUTDOWN, ACL SETUSER, REPLICAOF.
    let denied: redis::RedisResult<Vec<String>> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut conn)
        .await;
    assert!(denied.is_err(), "CONFIG is an admin command");
    let denied: redis::RedisResult<()> = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("crsd")
        .arg("off")
        .query_async(&mut conn)
        .await;
    assert!(denied.is_err(), "users cannot lock crsd out");
    assert!(
        redis_conn(host, port, "wrong-password1").await.is_err(),
        "a wrong password fails AUTH"
    );
}
