//! The warm pool end to end: crsd keeps empty redis-servers running; a create takes them as
//! its instance's nodes without restarting them, gives them the instance's users, memory and
//! roles, and the pool fills up again. Warm nodes nobody can write into, survive a crsd
//! restart, are replaced after a kill -9; a taken node restarts on its instance's config with
//! its data; deleting the instance removes its folders. The cluster edition takes six
//! cluster-enabled warm nodes for 3 shards × 1 replica.

mod common;

use common::cluster::{cluster_config, create_cluster, PASSWORD as CLUSTER_PASSWORD};
use common::tc3::Tc3;
use common::{engine, redis_conn, service, test_config, TestCrsd};
use crsd_core::model::{WarmNode, WarmState, WARM_FOLDER};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Warm2024pw";

/// Waits until the pool holds every warm node the settings want, each running; returns them.
async fn full_pool(crsd: &TestCrsd) -> Vec<WarmNode> {
    let svc = service(crsd);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !svc.warm_pool_full().await.unwrap() {
        assert!(Instant::now() < deadline, "the warm pool does not fill up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    svc.store().warm_nodes().await.unwrap()
}

/// The pid of every warm node.
fn warm_pids(crsd: &TestCrsd, warm: &[WarmNode]) -> BTreeMap<String, u32> {
    let (svc, eng) = (service(crsd), engine(crsd));
    warm.iter()
        .map(|w| {
            let pid = eng
                .running_pid(&svc.warm_spec(w))
                .unwrap_or_else(|| panic!("warm node {} runs", w.id));
            (w.id.clone(), pid)
        })
        .collect()
}

/// Connects as crsd's user with `secret`.
async fn as_admin(
    port: u16,
    secret: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let url = format!(
        "redis://{}:{secret}@127.0.0.1:{port}/",
        crsd_service::ADMIN_USER
    );
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

async fn info(con: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .unwrap()
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_takes_running_warm_nodes_and_gives_them_its_users_memory_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.instances.warm_nodes = 2;
    cfg.listen = format!("127.0.0.1:{}", common::free_port())
        .parse()
        .unwrap();
    let mut crsd = TestCrsd::start_with(dir, cfg).await;
    let svc = service(&crsd);

    let warm = full_pool(&crsd).await;
    assert_eq!(warm.len(), 2, "{warm:?}");
    assert!(warm.iter().all(|w| !w.cluster && w.id.starts_with("node-")));
    let pids = warm_pids(&crsd, &warm);
    let metrics = svc.render_metrics().await;
    assert!(
        metrics.contains("crsd_warm_nodes{kind=\"standard\"} 2\n")
            && metrics.contains("crsd_warm_nodes{kind=\"cluster\"} 0\n"),
        "{metrics}"
    );

    // Nobody writes into a warm node: its `default` user has a password nobody was given.
    for w in &warm {
        let url = format!("redis://127.0.0.1:{}/", w.port);
        let mut con = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let set: redis::RedisResult<()> = redis::cmd("SET")
            .arg("k")
            .arg("v")
            .query_async(&mut con)
            .await;
        let err = set.expect_err("a warm node refuses a client without its password");
        assert!(err.to_string().contains("NOAUTH"), "{err}");
    }

    let v2 = crsd.client();
    let made = v2.create(PASSWORD, 1).await;
    let id = made[0]["redisId"].as_str().unwrap().to_string();
    let inst = svc.store().instance(&id).await.unwrap().unwrap();

    // The instance's nodes are the warm ones, the same processes, with their ports and
    // folders, and without the pool's secret once the create has finished.
    let taken: BTreeSet<&str> = inst.nodes.iter().map(|n| n.id.as_str()).collect();
    let warm_ids: BTreeSet<&str> = warm.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(taken, warm_ids, "the create took the warm nodes");
    let eng = engine(&crsd);
    for n in &inst.nodes {
        let w = warm.iter().find(|w| w.id == n.id).unwrap();
        assert_eq!(n.port, w.port);
        assert_eq!(n.folder, WARM_FOLDER);
        assert!(n.warm_secret.is_empty(), "{n:?}");
        let spec = svc.node_spec(&inst, n);
        assert_eq!(
            eng.running_pid(&spec),
            Some(pids[&n.id]),
            "node {} was not restarted",
            n.id
        );
        // The pool's secret no longer opens it; the instance's does.
        let old = as_admin(n.port, &w.admin_secret).await;
        assert!(old.is_err(), "the warm secret still logs in to {}", n.id);
        let mut con = as_admin(n.port, &inst.admin_secret).await.unwrap();
        let memory = info(&mut con, "memory").await;
        assert_eq!(field(&memory, "maxmemory"), Some("1073741824"), "{memory}");
        if let Some(ceiling) = eng.ceiling_status(&spec) {
            assert!(
                ceiling.limit_bytes >= 1024 * 1024 * 1024,
                "the memory ceiling follows the instance: {ceiling:?}"
            );
        }
    }

    // The replica follows the master and is in sync; the instance's user writes through the
    // stable address and reads the write back from the replica.
    let master = inst.master().unwrap().clone();
    let replica = inst.replicas().next().unwrap().clone();
    let mut r = as_admin(replica.port, &inst.admin_secret).await.unwrap();
    let repl = info(&mut r, "replication").await;
    assert_eq!(field(&repl, "role"), Some("slave"), "{repl}");
    assert_eq!(
        field(&repl, "master_port"),
        Some(master.port.to_string().as_str())
    );
    let host = made[0]["wanIp"].as_str().unwrap();
    let port = made[0]["port"].as_i64().unwrap() as u16;
    let mut user = redis_conn(host, port, PASSWORD).await.unwrap();
    redis::cmd("SET")
        .arg("greeting")
        .arg("warm")
        .query_async::<()>(&mut user)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got: Option<String> = redis::cmd("GET")
            .arg("greeting")
            .query_async(&mut r)
            .await
            .unwrap();
        if got.as_deref() == Some("warm") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replica does not get the write"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The pool fills up again with new nodes.
    let refilled = full_pool(&crsd).await;
    assert_eq!(refilled.len(), 2);
    assert!(refilled.iter().all(|w| !warm_ids.contains(w.id.as_str())));
    let refilled_pids = warm_pids(&crsd, &refilled);

    // A crsd restart finds the warm nodes and the instance's running: nothing restarts.
    crsd.restart().await;
    let svc = service(&crsd);
    let again = full_pool(&crsd).await;
    assert_eq!(
        warm_pids(&crsd, &again),
        refilled_pids,
        "warm nodes adopted"
    );
    for n in &inst.nodes {
        assert_eq!(
            eng.running_pid(&svc.node_spec(&inst, n)),
            Some(pids[&n.id]),
            "node {} adopted",
            n.id
        );
    }

    // kill -9 of a warm node: the pool replaces it, and its folder goes.
    let victim = &again[0];
    let pid = refilled_pids[&victim.id];
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    let folder = crsd.data_dir().join("instances").join(WARM_FOLDER);
    let deadline = Instant::now() + Duration::from_secs(20);
    let again = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = full_pool(&crsd).await;
        if now.iter().all(|w| w.id != victim.id) && !folder.join(&victim.id).exists() {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "the killed warm node is not replaced"
        );
    };
    assert_eq!(again.len(), 2);

    // Stopped and started again, the taken nodes start from their instance's config in the
    // pool's folder, with their data.
    let c = Tc3::like(&v2);
    c.ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    c.wait_status(&id, Some(-2)).await;
    let r = c.ok("StartupInstance", json!({ "InstanceId": id })).await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    c.wait_status(&id, Some(2)).await;
    let mut user = redis_conn(host, port, PASSWORD).await.unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg("greeting")
        .query_async(&mut user)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("warm"));
    let conf = std::fs::read_to_string(folder.join(&master.id).join("redis.conf")).unwrap();
    assert!(
        conf.contains(&format!("# {}", master.id)) && conf.contains("maxmemory 1024mb"),
        "rendered from the instance's spec: {conf}"
    );

    // Deleted, the instance takes its nodes' folders along; the warm ones stay.
    c.ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    c.wait_status(&id, Some(-2)).await;
    let r = c.ok("CleanUpInstance", json!({ "InstanceId": id })).await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    for n in &inst.nodes {
        assert!(!folder.join(&n.id).exists(), "{} removed", n.id);
    }
    for w in &again {
        assert!(folder.join(&w.id).exists(), "warm node {} kept", w.id);
    }

    // A node a crash left half started is removed; a lowered setting stops the newest.
    let leftover = WarmNode {
        id: "node-000000000000".into(),
        cluster: false,
        port: crsd.config.instances.port_max,
        admin_secret: "a".repeat(32),
        repl_secret: "b".repeat(32),
        created_at: chrono::Utc::now(),
        state: WarmState::Starting,
    };
    let mut tx = svc.store().write().await.unwrap();
    tx.insert_warm_node(&leftover).await.unwrap();
    tx.commit().await.unwrap();
    crsd.config.instances.warm_nodes = 1;
    crsd.restart().await;
    let svc = service(&crsd);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = svc.store().warm_nodes().await.unwrap();
        let ids: Vec<&str> = now.iter().map(|w| w.id.as_str()).collect();
        if ids == [again[0].id.as_str()] {
            break;
        }
        assert!(Instant::now() < deadline, "pool not trimmed: {now:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!folder.join(&again[1].id).exists());
    assert_eq!(eng.running_pid(&svc.warm_spec(&again[1])), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_create_takes_six_warm_cluster_nodes() {
    let (dir, mut cfg) = cluster_config();
    cfg.instances.warm_cluster_nodes = 6;
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let svc = service(&crsd);
    let warm = full_pool(&crsd).await;
    assert_eq!(warm.len(), 6);
    assert!(warm.iter().all(|w| w.cluster));
    let pids = warm_pids(&crsd, &warm);

    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;
    let inst = svc.store().instance(&id).await.unwrap().unwrap();
    assert_eq!(inst.nodes.len(), 6);
    let eng = engine(&crsd);
    for n in &inst.nodes {
        assert_eq!(
            eng.running_pid(&svc.node_spec(&inst, n)),
            pids.get(&n.id).copied(),
            "node {} is a warm node, not restarted",
            n.id
        );
        // Every node sees the whole cluster serving every slot, three masters with one
        // replica each.
        let mut con = redis_conn("127.0.0.1", n.port, CLUSTER_PASSWORD)
            .await
            .unwrap();
        let ci: String = redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(field(&ci, "cluster_state"), Some("ok"), "{ci}");
        assert_eq!(field(&ci, "cluster_slots_assigned"), Some("16384"), "{ci}");
        assert_eq!(field(&ci, "cluster_size"), Some("3"), "{ci}");
        assert_eq!(field(&ci, "cluster_known_nodes"), Some("6"), "{ci}");
    }
    // The pool fills up again.
    let refilled = full_pool(&crsd).await;
    assert_eq!(refilled.len(), 6);
    assert!(refilled.iter().all(|w| !pids.contains_key(&w.id)));
}
