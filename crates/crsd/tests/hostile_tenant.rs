//! A tenant who attacks through their own instance: a Lua script that grows past the
//! instance's memory, MIGRATE to probe the network, and nodes left by an older crsd with the
//! old rules. Real crsd, real redis-server processes in real cgroups; small sizes (the
//! attacked instance is shrunk to 64 MB, its ceiling is 128 MB).

mod common;

use common::{admin_conn, redis_conn, service, TestCrsd};
use crsd_engine::NodeSpec;
use std::path::Path;
use std::time::{Duration, Instant};

const PW: &str = "Tenant1pass";
const MB: u64 = 1024 * 1024;

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn specs(crsd: &TestCrsd, id: &str) -> (NodeSpec, NodeSpec) {
    let svc = service(crsd);
    let inst = svc.store().instance(id).await.unwrap().unwrap();
    common::master_and_replica(&svc, &inst)
}

fn in_cgroup(dir: &Path, pid: u32) -> bool {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.trim() == pid.to_string())
}

#[tokio::test]
async fn a_lua_table_past_the_instance_memory_is_stopped_at_the_ceiling_and_counted() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let created = c.create(PW, 2).await;
    let (a, b) = (
        created[0]["redisId"].as_str().unwrap().to_string(),
        created[1]["redisId"].as_str().unwrap().to_string(),
    );
    let svc = service(&crsd);
    let engine = common::engine(&crsd);
    assert!(
        engine.ceiling_version().is_some(),
        "this host offers no usable cgroup; the ceiling cannot be tested"
    );

    // The catalog sells whole GB, and 1.5 GB is too much to fill on a test machine: shrink
    // the attacked instance to 64 MB as a resize would (record, then the live change).
    let mut inst = svc.store().instance(&a).await.unwrap().unwrap();
    inst.mem_mb = 64;
    let mut tx = svc.store().write().await.unwrap();
    tx.update_instance(&inst).await.unwrap();
    tx.commit().await.unwrap();
    let (a_master, a_replica) = specs(&crsd, &a).await;
    engine.set_maxmemory(&a_master, 64).await.unwrap();
    engine.set_maxmemory(&a_replica, 64).await.unwrap();
    let limit = engine.ceiling_status(&a_master).unwrap().limit_bytes;
    assert_eq!(limit, 128 * MB);

    let host = created[0]["wanIp"].as_str().unwrap().to_string();
    let a_port = created[0]["port"].as_u64().unwrap() as u16;
    let b_port = created[1]["port"].as_u64().unwrap() as u16;
    let mut mine = redis_conn(&host, a_port, PW).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("kept")
        .arg("yes")
        .query_async(&mut mine)
        .await
        .unwrap();
    let mut theirs = redis_conn(&host, b_port, PW).await.unwrap();
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut theirs)
            .await
            .unwrap();
    }
    let (b_master, b_replica) = specs(&crsd, &b).await;
    let b_pids = (
        engine.running_pid(&b_master).unwrap(),
        engine.running_pid(&b_replica).unwrap(),
    );
    let killed = engine.running_pid(&a_master).unwrap();

    // ~3 million entries of ~110 bytes: far past the ceiling, far below the host's memory.
    let probe = "local t={} for i=1,tonumber(ARGV[1]) do t[i]=string.rep('x',100)..i end return #t";
    let reply: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg(probe)
        .arg(0)
        .arg(3_000_000)
        .query_async(&mut mine)
        .await;
    assert!(reply.is_err(), "the script finished: {reply:?}");

    // The supervisor notices, counts the kill, and brings the node back from its AOF.
    wait_for("the master back", Duration::from_secs(30), || async {
        engine
            .running_pid(&a_master)
            .is_some_and(|pid| pid != killed)
            && engine.adopt(&a_master).await.is_ok_and(|h| h.is_some())
    })
    .await;
    let inst = svc.store().instance(&a).await.unwrap().unwrap();
    assert!(
        inst.oom_kills >= 1,
        "the kill was counted: {}",
        inst.oom_kills
    );
    let status = engine.ceiling_status(&a_master).unwrap();
    eprintln!("peak {:?} of {}", status.peak_bytes, status.limit_bytes);
    if let Some(peak) = status.peak_bytes {
        assert!(peak <= limit, "peak {peak} over the ceiling {limit}");
    }
    assert!(in_cgroup(
        &status.memory_dir,
        engine.running_pid(&a_master).unwrap()
    ));
    // The address leads there again once the proxy's check has seen the node (100 ms apart
    // while a node changes state): a client connects again until then.
    wait_for(
        "the key written before at the instance's address",
        Duration::from_secs(10),
        || {
            let host = host.clone();
            async move {
                let Ok(mut mine) = redis_conn(&host, a_port, PW).await else {
                    return false;
                };
                let kept: redis::RedisResult<Option<String>> =
                    redis::cmd("GET").arg("kept").query_async(&mut mine).await;
                matches!(kept, Ok(Some(v)) if v == "yes")
            }
        },
    )
    .await;

    // The neighbour: same processes, same data.
    assert_eq!(
        (
            engine.running_pid(&b_master).unwrap(),
            engine.running_pid(&b_replica).unwrap()
        ),
        b_pids
    );
    let n: u64 = redis::cmd("DBSIZE").query_async(&mut theirs).await.unwrap();
    assert_eq!(n, 100);
    assert_eq!(
        svc.store().instance(&b).await.unwrap().unwrap().oom_kills,
        0
    );
}

#[tokio::test]
async fn an_upgrade_raises_the_memory_ceiling_live_and_a_delete_removes_it() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let id = c.create(PW, 1).await[0]["redisId"]
        .as_str()
        .unwrap()
        .to_string();
    let svc = service(&crsd);
    let engine = common::engine(&crsd);
    let (master, replica) = specs(&crsd, &id).await;
    let pid = engine.running_pid(&master).unwrap();
    // 1024 MB + 50 %.
    assert_eq!(
        engine.ceiling_status(&master).unwrap().limit_bytes,
        1536 * MB
    );

    c.ok("UpgradeRedis", &[("redisId", &id), ("memSize", "2048")])
        .await;
    wait_for("the resize task", Duration::from_secs(30), || async {
        let inst = svc.store().instance(&id).await.unwrap().unwrap();
        inst.lock_task.is_none() && inst.mem_mb == 2048
    })
    .await;
    for spec in [&master, &replica] {
        assert_eq!(
            engine.ceiling_status(spec).unwrap().limit_bytes,
            3072 * MB,
            "{}",
            spec.name
        );
    }
    assert_eq!(engine.running_pid(&master), Some(pid), "no restart");

    // Deleting the instance (what DeleteDBInstance runs) removes both cgroups.
    let dirs = [
        engine.ceiling_status(&master).unwrap().memory_dir,
        engine.ceiling_status(&replica).unwrap().memory_dir,
    ];
    assert!(dirs.iter().all(|d| d.is_dir()));
    let task = svc.delete(common::main_app_id(&crsd), &id).await.unwrap();
    assert_eq!(c.wait_task(task).await, 2);
    for d in &dirs {
        assert!(!d.exists(), "{} still there", d.display());
    }
}

#[tokio::test]
async fn the_tenant_gets_noperm_for_migrate_and_the_server_commands() {
    let crsd = TestCrsd::start().await;
    let c = crsd.client();
    let inst = &c.create(PW, 1).await[0];
    let host = inst["wanIp"].as_str().unwrap().to_string();
    let port = inst["port"].as_u64().unwrap() as u16;
    let mut con = redis_conn(&host, port, PW).await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let tport = target.local_addr().unwrap().port().to_string();
    for args in [
        vec!["MIGRATE", "127.0.0.1", &tport, "k", "0", "1000"],
        vec![
            "MIGRATE",
            "127.0.0.1",
            &tport,
            "",
            "0",
            "1000",
            "AUTH",
            "p",
            "KEYS",
            "k",
        ],
        vec!["REPLICAOF", "127.0.0.1", &tport],
        vec!["SLAVEOF", "127.0.0.1", &tport],
        vec!["CONFIG", "SET", "maxmemory", "0"],
        vec!["SHUTDOWN", "NOSAVE"],
        vec!["MONITOR"],
        vec!["CLIENT", "NO-EVICT", "on"],
    ] {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let err = cmd
            .query_async::<redis::Value>(&mut con)
            .await
            .expect_err("refused");
        assert_eq!(err.code(), Some("NOPERM"), "{args:?}: {err:?}");
    }
    assert!(
        matches!(target.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the instance connected out"
    );
    let v: String = redis::cmd("GET")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(v, "v");
}

#[tokio::test]
async fn a_restarted_crsd_gives_running_nodes_the_new_rules_and_their_cgroups_in_place() {
    let mut crsd = TestCrsd::start().await;
    let c = crsd.client();
    let inst = c.create(PW, 1).await[0].clone();
    let id = inst["redisId"].as_str().unwrap().to_string();
    let host = inst["wanIp"].as_str().unwrap().to_string();
    let port = inst["port"].as_u64().unwrap() as u16;
    let svc = service(&crsd);
    let engine = common::engine(&crsd);
    let (master, replica) = specs(&crsd, &id).await;
    let pids = (
        engine.running_pid(&master).unwrap(),
        engine.running_pid(&replica).unwrap(),
    );

    // What an older crsd left running: the old rules, and no cgroup (crsd's own).
    let mut admin = admin_conn(&svc, &id).await;
    let mut admin_r = engine.admin_connection(&replica).await.unwrap();
    for con in [&mut admin, &mut admin_r] {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("nocommands")
            .arg("+@all")
            .arg("-@admin")
            .query_async(con)
            .await
            .unwrap();
        let _: () = redis::cmd("CONFIG")
            .arg("REWRITE")
            .query_async(con)
            .await
            .unwrap();
    }
    let dir = engine.ceiling_status(&master).unwrap().memory_dir;
    let own = dir.parent().unwrap().parent().unwrap().to_path_buf();
    std::fs::write(own.join("cgroup.procs"), pids.0.to_string()).unwrap();
    assert!(!in_cgroup(&dir, pids.0));
    let mut con = redis_conn(&host, port, PW).await.unwrap();
    let before = migrate(&mut con).await;
    assert!(
        !matches!(&before, Err(e) if e.code() == Some("NOPERM")),
        "{before:?}"
    );
    drop(svc);

    // crsd restarts; its first supervisor pass adopts the nodes.
    crsd.restart().await;

    assert_eq!(
        (
            engine.running_pid(&master).unwrap(),
            engine.running_pid(&replica).unwrap()
        ),
        pids,
        "nothing restarted"
    );
    assert!(in_cgroup(&dir, pids.0), "moved back into its cgroup");
    for p in [port, replica.port] {
        let mut con = redis_conn(&host, p, PW).await.unwrap();
        let err = migrate(&mut con).await.expect_err("refused");
        assert_eq!(err.code(), Some("NOPERM"), "port {p}");
    }
}

/// A MIGRATE of a missing key to a port nobody listens on: NOPERM when the ACL refuses it.
async fn migrate(con: &mut redis::aio::MultiplexedConnection) -> redis::RedisResult<redis::Value> {
    redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(common::free_port())
        .arg("nokey")
        .arg(0)
        .arg(100)
        .query_async::<redis::Value>(con)
        .await
}
