//! Faults with the real binary: kill -9 of crsd while a task runs, restart, re-adoption of
//! running instances; kill -9 of an instance's redis-server and the supervisor bringing it
//! back with every acknowledged write.

mod common;

use common::daemon::Daemon;
use common::redis_conn;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const SECRET_ID: &str = "AKIDfaultsTestSecretId000000000001";
const SECRET_KEY: &str = "faultsTestSecretKey0000000000001";
const PASSWORD: &str = "Faults2024(ok";

fn pid_of(data: &Path, id: &str, role: &str) -> i32 {
    let p = common::daemon::node_dir(data, id, role).join("redis.pid");
    std::fs::read_to_string(&p).unwrap().trim().parse().unwrap()
}

async fn dbsize(host: &str, port: u16) -> redis::RedisResult<i64> {
    let mut c = redis_conn(host, port, PASSWORD).await?;
    redis::cmd("DBSIZE").query_async(&mut c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_outlive_crsd_and_redis_comes_back_with_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let inst = c.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();
    let host = inst["wanIp"].as_str().unwrap().to_string();
    let port = inst["port"].as_u64().unwrap() as u16;
    let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
    for i in 0..1000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut conn)
            .await
            .unwrap();
    }

    // Acknowledged by the replica too: what a failover to it keeps.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica has every write");

    // kill -9 crsd: the instance keeps serving.
    let master_pid = pid_of(&d.data, &id, "master");
    d.kill9();
    assert_eq!(dbsize(&host, port).await.unwrap(), 1000);

    // Restart: the same processes are adopted, not restarted.
    d.start().await;
    let again = c.describe_one(&id).await;
    assert_eq!(again["status"], 2);
    assert_eq!(
        pid_of(&d.data, &id, "master"),
        master_pid,
        "adopted, not restarted"
    );

    if std::env::var_os("FAULTS_DEBUG").is_some() {
        for role in ["master", "replica"] {
            let conf = std::fs::read_to_string(d.node_dir(&id, role).join("redis.conf")).unwrap();
            let p: u16 = conf
                .lines()
                .find_map(|l| l.strip_prefix("port "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut c = redis_conn(&host, p, PASSWORD).await.unwrap();
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .unwrap();
            let n: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
            eprintln!("{role} at {p}: dbsize {n}\n{info}");
        }
    }
    // kill -9 the master's redis-server: the address serves every key again (Sentinel
    // promotes the replica, or, while the sentinels have not found each other yet, the
    // supervisor brings the master back after its grace), and the killed node runs again.
    Command::new("kill")
        .args(["-9", &master_pid.to_string()])
        .status()
        .unwrap();
    // (A node that is loading or resyncing may answer for a moment while the proxy's check
    // has not caught up: what counts is that every key is there once it settles.)
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    loop {
        if let Ok(n) = dbsize(&host, port).await {
            if n == 1000 {
                break;
            }
            seen.push(n);
        }
        assert!(
            Instant::now() < deadline,
            "every acknowledged write survives; DBSIZE at the address: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !seen.is_empty() {
        eprintln!("DBSIZE at the address before it settled: {seen:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(d.node_dir(&id, "master").join("redis.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_none_or(|p| p == master_pid || !Path::new(&format!("/proc/{p}")).exists())
    {
        assert!(
            Instant::now() < deadline,
            "the killed node did not run again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // kill -9 the replica: it comes back too and follows the master again.
    let replica_pid = pid_of(&d.data, &id, "replica");
    Command::new("kill")
        .args(["-9", &replica_pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now_pid = std::fs::read_to_string(d.node_dir(&id, "replica").join("redis.pid"))
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok());
        if now_pid.is_some_and(|p| p != replica_pid && Path::new(&format!("/proc/{p}")).exists()) {
            break;
        }
        assert!(Instant::now() < deadline, "replica did not come back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The address serves (the killed node may have been the master by then).
    let deadline = Instant::now() + Duration::from_secs(30);
    let k = loop {
        if let Ok(mut conn) = redis_conn(&host, port, PASSWORD).await {
            if let Ok(k) = redis::cmd("GET")
                .arg("k999")
                .query_async::<String>(&mut conn)
                .await
            {
                break k;
            }
        }
        assert!(Instant::now() < deadline, "the address did not serve again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(k, "999");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_interrupted_by_kill9_ends_in_a_defined_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let v = c
        .ok(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", "3"),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await;
    let deal = v["data"]["dealId"].as_str().unwrap().to_string();
    // Kill crsd while the newInstance tasks run.
    d.kill9();
    d.start().await;
    // The resumed tasks finish: the deal is delivered and every instance serves.
    let ids = c.wait_deal(&deal).await;
    assert_eq!(ids.len(), 3);
    for id in &ids {
        let inst = c.describe_one(id).await;
        assert_eq!(inst["status"], 2, "{inst}");
        let port = inst["port"].as_u64().unwrap() as u16;
        assert_eq!(
            dbsize(inst["wanIp"].as_str().unwrap(), port).await.unwrap(),
            0
        );
    }
    let tasks = c
        .ok("GetRedisTaskList", &[("limit", "10"), ("offset", "0")])
        .await;
    assert_eq!(tasks["totalCount"], 3);
    for t in tasks["data"]["redisTaskSet"].as_array().unwrap() {
        assert_eq!(t["status"], 2, "{t}");
        assert_eq!(t["progress"], 1);
    }
}

/// The replay journal needs no clean shutdown: a request answered before a kill -9 of crsd is
/// refused as a replay by the next crsd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_used_before_a_kill9_is_refused_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let once = c.signed("DescribeRedisZones", &[]);
    let v = c.send(&once).await;
    assert_eq!(v["code"], 0, "{v}");
    d.kill9();
    d.start().await;
    let v = c.send(&once).await;
    assert_eq!(v["code"], 4500, "a replay after kill -9: {v}");
    assert_eq!(
        c.send(&c.signed("DescribeRedisZones", &[])).await["code"],
        0
    );
}
