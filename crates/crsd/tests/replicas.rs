//! Standard instances with 1 to 5 replicas, end to end over API 3.0 (TC3 signatures, real
//! HTTP, real redis-server processes): every node holds the data, replicas are added and
//! removed live under a writing client with nothing lost, a backup and a restore leave every
//! node exact, a kill -9 of crsd adopts every node and a killed replica comes back following
//! the current master, and refused changes change nothing.

mod common;

use common::daemon::Daemon;
use common::tc3::Tc3;
use common::{redis_conn, TestCrsd};
use crsd_core::model::{Instance, NodeRole};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Replicas-2024-Pass";
const HOST: &str = "127.0.0.1";

// ------------------------------------------------------------------------------ helpers

async fn conn(port: u16) -> MultiplexedConnection {
    redis_conn(HOST, port, PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("a connection to {port}: {e}"))
}

/// Every key and value a node holds.
async fn contents(port: u16) -> BTreeMap<String, String> {
    let mut c = conn(port).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    for chunk in keys.chunks(500) {
        let values: Vec<String> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(&mut c)
            .await
            .unwrap();
        out.extend(chunk.iter().cloned().zip(values));
    }
    out
}

async fn set_many(port: u16, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut c = conn(port).await;
    let mut written = BTreeMap::new();
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i}"), format!("v{i}-{prefix}"));
        redis::cmd("SET")
            .arg(&k)
            .arg(&v)
            .query_async::<()>(&mut c)
            .await
            .unwrap();
        written.insert(k, v);
    }
    written
}

/// `WAIT n timeout` on the master: how many replicas acknowledged every write so far.
async fn wait_replicas(master: u16, n: usize) -> i64 {
    let mut c = conn(master).await;
    redis::cmd("WAIT")
        .arg(n)
        .arg(5000)
        .query_async(&mut c)
        .await
        .unwrap()
}

/// `INFO replication` of a node as `field -> value`.
async fn replication(port: u16) -> BTreeMap<String, String> {
    let mut c = conn(port).await;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Polls until the node at `port` is a replica of `master` with its link up.
async fn until_follows(port: u16, master: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = replication(port).await;
        let ok = r.get("role").map(String::as_str) == Some("slave")
            && r.get("master_port") == Some(&master.to_string())
            && r.get("master_link_status").map(String::as_str) == Some("up");
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{port} does not follow {master}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pid in a node folder's pid file, if that process is a redis-server.
fn node_pid(node_dir: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(node_dir.join("redis.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    redis_runs(pid).then_some(pid)
}

fn redis_runs(pid: i32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // A zombie (state Z after the command's parenthesis) has left already.
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, s)| s.starts_with('Z'));
    String::from_utf8_lossy(&cmd).contains("redis-server") && !zombie
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind((HOST, port)).is_ok()
}

fn node_dir(data: &Path, inst: &str, node: &str) -> std::path::PathBuf {
    data.join("instances").join(inst).join(node)
}

async fn stored(crsd: &TestCrsd, id: &str) -> Instance {
    common::service(crsd)
        .store()
        .instance(id)
        .await
        .unwrap()
        .expect("the instance")
}

fn replica_ports(inst: &Instance) -> Vec<u16> {
    inst.replicas().map(|n| n.port).collect()
}

/// The instance's nodes as (id, role, port, pid).
fn processes(data: &Path, inst: &Instance) -> Vec<(String, NodeRole, u16, Option<i32>)> {
    let mut out: Vec<_> = inst
        .nodes
        .iter()
        .map(|n| {
            let pid = node_pid(&node_dir(data, &inst.id, &n.id));
            (n.id.clone(), n.role, n.port, pid)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// DescribeInstanceNodeInfo's roles, the master first, and its node ids.
async fn node_info(c: &Tc3, id: &str) -> (Vec<String>, Vec<String>) {
    let r = c
        .ok("DescribeInstanceNodeInfo", json!({ "InstanceId": id }))
        .await;
    let nodes = r["Redis"].as_array().unwrap();
    assert_eq!(r["RedisCount"], nodes.len(), "{r}");
    let mut roles: Vec<String> = nodes
        .iter()
        .map(|n| n["NodeRole"].as_str().unwrap().to_string())
        .collect();
    roles.sort_by_key(|r| r != "master");
    let ids = nodes.iter().map(|n| n["NodeId"].to_string()).collect();
    (roles, ids)
}

fn roles(replicas: usize) -> Vec<String> {
    std::iter::once("master")
        .chain(std::iter::repeat_n("slave", replicas))
        .map(String::from)
        .collect()
}

/// UpgradeInstance to `replicas` (the current MemSize repeated); waits for its task to
/// succeed and its deal to be delivered; returns the deal's price next to the quote.
async fn change_replicas(c: &Tc3, id: &str, replicas: i64) -> (f64, f64) {
    let q = json!({"InstanceId": id, "MemSize": 1024, "RedisShardNum": 1,
        "RedisReplicasNum": replicas});
    let quoted = c.ok("InquiryPriceUpgradeInstance", q.clone()).await["Price"]
        .as_f64()
        .unwrap();
    let r = c.ok("UpgradeInstance", q).await;
    let deal = r["DealId"].as_str().unwrap().to_string();
    let task = c.newest_task(id, "029").await;
    assert_eq!(
        c.wait_task(task).await,
        "succeed",
        "the change to {replicas}"
    );
    let d = c.wait_deal(&deal).await;
    assert_eq!(d["InstanceIds"], json!([id]), "{d}");
    (d["Price"].as_f64().unwrap(), quoted)
}

// ------------------------------------------------------------------------------ the tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_each_hold_the_data_and_wait_3_answers_3() {
    let crsd = TestCrsd::start().await;
    let c = Tc3::like(&crsd.client());
    let id = c.create(PASSWORD, 3).await;

    let e = c.describe(&id).await;
    assert_eq!(e["RedisReplicasNum"], 3, "{e}");
    assert_eq!(e["Status"], 2, "{e}");
    let (roles_seen, ids) = node_info(&c, &id).await;
    assert_eq!(roles_seen, roles(3));
    let distinct: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "every node its own id: {ids:?}");

    let inst = stored(&crsd, &id).await;
    assert_eq!(inst.nodes.len(), 4);
    assert_eq!(
        e["Port"],
        inst.port(),
        "the instance's port is its stable address"
    );
    let master = inst.master().unwrap().port;
    assert_ne!(inst.port(), master, "the address is not a node's port");
    // Through the stable address, and then on the master itself.
    let written = set_many(inst.port(), "k", 200).await;
    assert_eq!(wait_replicas(master, 3).await, 3, "WAIT 3");
    assert_eq!(contents(master).await, written);
    for port in replica_ports(&inst) {
        until_follows(port, master).await;
        assert_eq!(contents(port).await, written, "the replica at {port}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_to_one_to_two_replicas_live_under_writes_lose_nothing() {
    let crsd = TestCrsd::start().await;
    let c = Tc3::like(&crsd.client());
    let app = common::main_app_id(&crsd);
    let data = crsd.data_dir();
    let id = c.create(PASSWORD, 3).await;
    let before = common::balance(&crsd, app).await;
    let inst = stored(&crsd, &id).await;
    // The master node itself (the stable address leads there too).
    let master = inst.master().unwrap().port;
    let master_pid = node_pid(&node_dir(&data, &id, &inst.master().unwrap().id));

    // A client writing to the master all along: SET k<n>, n counting up.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        tokio::spawn(async move {
            let mut c = conn(master).await;
            let mut errors = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let r: redis::RedisResult<()> = redis::cmd("SET")
                    .arg(format!("k{n}"))
                    .arg(n)
                    .query_async(&mut c)
                    .await;
                match r {
                    Ok(()) => {
                        n += 1;
                        acked.store(n, Ordering::SeqCst);
                    }
                    Err(e) => {
                        // Stop at the first: the test fails on it, and a broken connection
                        // would fail every later write at once.
                        errors.push(e.to_string());
                        break;
                    }
                }
            }
            (n, errors)
        })
    };
    let writes_go_on = |from: u64| {
        let acked = acked.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            while acked.load(Ordering::SeqCst) < from + 50 {
                assert!(Instant::now() < deadline, "the writer is stuck");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    writes_go_on(0).await;

    // 3 -> 1: the newest two go, processes, ports and folders with them.
    let gone: Vec<_> = processes(&data, &inst)
        .into_iter()
        .filter(|(_, role, _, _)| *role == NodeRole::Replica)
        .skip(1)
        .collect();
    assert_eq!(gone.len(), 2);
    // Where the node cgroups exist (a ceiling is set), each node has its own.
    let ceilings = !common::node_cgroups(&inst.master().unwrap().id).is_empty();
    for (node, _, _, _) in &gone {
        assert_eq!(
            !common::node_cgroups(node).is_empty(),
            ceilings,
            "{node}'s cgroup"
        );
    }
    let (paid_down, quoted_down) = change_replicas(&c, &id, 1).await;
    assert_eq!(
        (paid_down, quoted_down),
        (0.0, 0.0),
        "fewer replicas cost nothing"
    );
    let after = stored(&crsd, &id).await;
    assert_eq!(after.replica_count(), 1);
    assert_eq!(c.describe(&id).await["RedisReplicasNum"], 1);
    assert_eq!(node_info(&c, &id).await.0, roles(1));
    for (node, _, port, pid) in &gone {
        assert!(after.nodes.iter().all(|n| &n.id != node), "{node} is gone");
        let pid = pid.expect("it ran before");
        assert!(!redis_runs(pid), "{node}'s redis-server {pid} is gone");
        assert!(port_free(*port), "{node}'s port {port} is free");
        assert!(
            !node_dir(&data, &id, node).exists(),
            "{node}'s folder is gone"
        );
        let left = common::node_cgroups(node);
        assert!(left.is_empty(), "{node}'s cgroups are gone: {left:?}");
    }
    assert_eq!(
        node_pid(&node_dir(&data, &id, &inst.master().unwrap().id)),
        master_pid,
        "the master was not touched"
    );
    writes_go_on(acked.load(Ordering::SeqCst)).await;

    // 1 -> 2: a new node, synced before the task ends, charged one replica more.
    let (paid_up, quoted_up) = change_replicas(&c, &id, 2).await;
    assert!(
        paid_up > 0.0 && (paid_up - quoted_up).abs() <= 1.0,
        "{paid_up} vs {quoted_up}"
    );
    let deadline = common::parse_time(&crsd, &c.describe(&id).await["DeadlineTime"]);
    let months = (deadline - common::service(&crsd).now()).num_seconds() as f64 / (30.0 * 86400.0);
    assert!(
        (paid_up - 4000.0 * months).abs() <= 2.0,
        "one replica more of 1 GB is 4000 a month, prorated: {paid_up}"
    );
    assert_eq!(
        common::balance(&crsd, app).await,
        before - paid_up as i64,
        "charged what the deals say"
    );
    let last = stored(&crsd, &id).await;
    assert_eq!(last.replica_count(), 2);
    assert_eq!(c.describe(&id).await["RedisReplicasNum"], 2);
    assert_eq!(node_info(&c, &id).await.0, roles(2));
    let kept = after.replicas().next().unwrap().id.clone();
    let new_node = last.replicas().find(|n| n.id != kept).expect("a new node");
    // Node ids are never reused: nodes 0-3 existed, the new one is node 4.
    assert_eq!(new_node.id, format!("{id}-4"), "a new id for the new node");
    let new_pid = node_pid(&node_dir(&data, &id, &new_node.id));
    assert!(new_pid.is_some(), "{} runs", new_node.id);
    assert_eq!(
        !common::node_cgroups(&new_node.id).is_empty(),
        ceilings,
        "{}'s cgroup",
        new_node.id
    );
    writes_go_on(acked.load(Ordering::SeqCst)).await;

    stop.store(true, Ordering::SeqCst);
    let (n, errors) = writer.await.unwrap();
    assert!(errors.is_empty(), "the client saw errors: {errors:?}");
    assert!(n > 150, "writes went on during the changes: {n}");
    let on_master = contents(master).await;
    let want: BTreeMap<String, String> = (0..n).map(|i| (format!("k{i}"), i.to_string())).collect();
    assert_eq!(on_master, want, "every acknowledged key is on the master");
    assert_eq!(wait_replicas(master, 2).await, 2);
    for port in replica_ports(&last) {
        until_follows(port, master).await;
        assert_eq!(contents(port).await, want, "the replica at {port}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_with_two_replicas_leave_every_node_exact() {
    let crsd = TestCrsd::start().await;
    let c = Tc3::like(&crsd.client());
    let id = c.create(PASSWORD, 2).await;
    let inst = stored(&crsd, &id).await;
    // The master node itself (the stable address leads there too).
    let master = inst.master().unwrap().port;
    let backed_up = set_many(master, "b", 300).await;

    let r = c
        .ok(
            "ManualBackupInstance",
            json!({"InstanceId": id, "Remark": "two replicas"}),
        )
        .await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    let r = c
        .ok("DescribeInstanceBackups", json!({ "InstanceId": id }))
        .await;
    assert_eq!(r["TotalCount"], 1, "{r}");
    let backup = r["BackupSet"][0]["BackupId"].as_str().unwrap().to_string();

    // Later writes the restore must undo, on every node.
    let later = set_many(master, "later", 50).await;
    let mut m = conn(master).await;
    redis::cmd("SET")
        .arg("b0")
        .arg("changed")
        .query_async::<()>(&mut m)
        .await
        .unwrap();
    redis::cmd("DEL")
        .arg("b1")
        .query_async::<()>(&mut m)
        .await
        .unwrap();
    assert_eq!(wait_replicas(master, 2).await, 2);
    for port in replica_ports(&inst) {
        let now = contents(port).await;
        assert_eq!(
            now.len(),
            backed_up.len() + later.len() - 1,
            "the replica at {port}"
        );
    }

    let r = c
        .ok(
            "RestoreInstance",
            json!({"InstanceId": id, "BackupId": backup, "Password": PASSWORD}),
        )
        .await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    let after = stored(&crsd, &id).await;
    assert_eq!(after.nodes, inst.nodes, "the same nodes");
    assert_eq!(contents(master).await, backed_up, "the master");
    for port in replica_ports(&after) {
        until_follows(port, master).await;
        assert_eq!(contents(port).await, backed_up, "the replica at {port}");
    }
    // And they keep replicating.
    let more = set_many(master, "after", 10).await;
    assert_eq!(wait_replicas(master, 2).await, 2);
    let mut want = backed_up.clone();
    want.extend(more);
    for port in replica_ports(&after) {
        assert_eq!(contents(port).await, want, "the replica at {port}");
    }
}

/// Every node of the instance under a real crsd's data dir, as (node id, port, pid), read from
/// the node folders (the port from the node's redis.conf).
fn daemon_nodes(data: &Path, id: &str) -> Vec<(String, u16, Option<i32>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(data.join("instances").join(id))
        .unwrap()
        .flatten()
    {
        if !e.file_type().unwrap().is_dir() {
            continue;
        }
        let conf = std::fs::read_to_string(e.path().join("redis.conf")).unwrap();
        let port = conf
            .lines()
            .find_map(|l| l.strip_prefix("port "))
            .and_then(|p| p.trim().parse().ok())
            .expect("a port line");
        out.push((
            e.file_name().to_string_lossy().into_owned(),
            port,
            node_pid(&e.path()),
        ));
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_of_crsd_adopts_every_node_and_a_killed_replica_follows_the_master_again() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(
        dir.path(),
        "AKIDreplicasTestSecretId0000000001",
        "replicasTestSecretKey00000000001",
    );
    d.start().await;
    let c = Tc3::like(&d.client());
    let id = c.create(PASSWORD, 3).await;
    // The master node itself (node 0; the stable address leads there too).
    let master = daemon_nodes(&d.data, &id)[0].1;
    let nodes = daemon_nodes(&d.data, &id);
    assert_eq!(nodes.len(), 4, "{nodes:?}");
    assert!(nodes.iter().all(|(_, _, pid)| pid.is_some()), "{nodes:?}");
    let written = set_many(master, "k", 100).await;
    assert_eq!(wait_replicas(master, 3).await, 3);

    // kill -9 crsd: every node keeps serving; the next crsd adopts them all.
    d.kill9();
    assert_eq!(contents(master).await, written);
    d.start().await;
    assert_eq!(c.describe(&id).await["Status"], 2);
    assert_eq!(daemon_nodes(&d.data, &id), nodes, "the same processes");

    // kill -9 a replica: it comes back as a replica of the master, and gets new writes.
    let (victim, port, pid) = nodes
        .iter()
        .find(|(_, port, _)| *port != master)
        .cloned()
        .unwrap();
    let pid = pid.unwrap();
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let folder = node_dir(&d.data, &id, &victim);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if node_pid(&folder).is_some_and(|p| p != pid) {
            break;
        }
        assert!(Instant::now() < deadline, "{victim} did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    until_follows(port, master).await;
    let more = set_many(master, "new", 20).await;
    assert_eq!(wait_replicas(master, 3).await, 3);
    let mut want = written.clone();
    want.extend(more);
    assert_eq!(contents(port).await, want, "the restarted replica");
    let r = replication(master).await;
    assert_eq!(r.get("role").map(String::as_str), Some("master"), "{r:?}");
    assert_eq!(
        r.get("connected_slaves").map(String::as_str),
        Some("3"),
        "{r:?}"
    );
    // The supervisor has made passes since the restart: the other nodes are the same processes.
    let now = daemon_nodes(&d.data, &id);
    for (before, after) in nodes.iter().zip(&now) {
        if before.0 != victim {
            assert_eq!(before, after, "adopted, never restarted");
        }
    }

    // kill -9 the master: Sentinel promotes a replica with every key, the killed node comes
    // back as a replica of it, and every other node follows it.
    let (master_node, _, master_pid) = now.iter().find(|n| n.1 == master).cloned().unwrap();
    let master_pid = master_pid.unwrap();
    // The sentinels must have found each other for this instance (hello messages) before a
    // failover can be agreed on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    std::process::Command::new("kill")
        .args(["-9", &master_pid.to_string()])
        .status()
        .unwrap();
    let folder = node_dir(&d.data, &id, &master_node);
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_pid(&folder).is_none_or(|p| p == master_pid) {
        assert!(
            Instant::now() < deadline,
            "the killed master did not run again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let new_master = loop {
        let mut masters = Vec::new();
        for (_, port, _) in &now {
            if replication(*port).await.get("role").map(String::as_str) == Some("master") {
                masters.push(*port);
            }
        }
        assert!(masters.len() <= 1, "two masters: {masters:?}");
        if let [m] = masters[..] {
            if m != master {
                break m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no replica was promoted: {masters:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(contents(new_master).await, want, "the new master's keys");
    let more = set_many(new_master, "after", 20).await;
    want.extend(more);
    for (_, port, _) in now.iter().filter(|n| n.1 != new_master) {
        until_follows(*port, new_master).await;
    }
    assert_eq!(wait_replicas(new_master, 3).await, 3);
    for (_, port, _) in now.iter().filter(|n| n.1 != new_master) {
        assert_eq!(contents(*port).await, want, "the replica at {port}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_replica_changes_change_nothing() {
    let crsd = TestCrsd::start().await;
    let c = Tc3::like(&crsd.client());
    let app = common::main_app_id(&crsd);
    let data = crsd.data_dir();
    let id = c.create(PASSWORD, 2).await;
    let inst = stored(&crsd, &id).await;
    let before = common::balance(&crsd, app).await;
    let tasks = |c: Tc3, id: String| async move {
        c.ok("DescribeTaskList", json!({"InstanceId": id, "Limit": 100}))
            .await["TotalCount"]
            .as_i64()
            .unwrap()
    };
    let tasks_before = tasks(c.clone(), id.clone()).await;
    let running = processes(&data, &inst);
    assert!(running.iter().all(|p| p.3.is_some()), "{running:?}");
    let unchanged = |what: String| {
        let (c, crsd, data, id, running) = (c.clone(), &crsd, data.clone(), id.clone(), &running);
        async move {
            assert_eq!(
                common::balance(crsd, app).await,
                before,
                "{what}: nothing charged"
            );
            let now = stored(crsd, &id).await;
            assert_eq!(processes(&data, &now), *running, "{what}: the same nodes");
            let e = c.describe(&id).await;
            assert_eq!(e["RedisReplicasNum"], 2, "{what}: {e}");
            assert_eq!(e["Status"], 2, "{what}: {e}");
            assert_eq!(e["Size"], 1024.0, "{what}: {e}");
            assert_eq!(
                tasks(c.clone(), id.clone()).await,
                tasks_before,
                "{what}: no task"
            );
            let all = c.ok("DescribeInstances", json!({})).await;
            assert_eq!(all["TotalCount"], 1, "{what}: nothing created");
        }
    };

    let order = json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
        "BillingMode": 1, "ZoneId": 100002, "Password": PASSWORD, "RedisShardNum": 1});
    for bad in [0, 6] {
        let mut o = order.clone();
        o["RedisReplicasNum"] = json!(bad);
        c.err("CreateInstances", o, "InvalidParameterValue").await;
        unchanged(format!("CreateInstances with {bad}")).await;
        c.err(
            "UpgradeInstance",
            json!({"InstanceId": id, "MemSize": 1024, "RedisReplicasNum": bad}),
            "InvalidParameterValue",
        )
        .await;
        unchanged(format!("UpgradeInstance to {bad}")).await;
    }
    c.err(
        "UpgradeInstance",
        json!({"InstanceId": id, "MemSize": 2048, "RedisReplicasNum": 3}),
        "InvalidParameterValue",
    )
    .await;
    unchanged("memory and replicas at once".into()).await;

    // A change while another runs (the instance is busy until its task ends) is refused.
    let first = c
        .ok(
            "UpgradeInstance",
            json!({"InstanceId": id, "MemSize": 1024, "RedisReplicasNum": 3}),
        )
        .await;
    for action in ["UpgradeInstance", "InquiryPriceUpgradeInstance"] {
        c.err(
            action,
            json!({"InstanceId": id, "MemSize": 1024, "RedisReplicasNum": 1}),
            "ResourceUnavailable.InstanceStatusAbnormal",
        )
        .await;
    }
    let deal = first["DealId"].as_str().unwrap();
    let d = c.wait_deal(deal).await;
    let paid = d["Price"].as_f64().unwrap() as i64;
    assert_eq!(
        common::balance(&crsd, app).await,
        before - paid,
        "one change charged"
    );
    let now = stored(&crsd, &id).await;
    assert_eq!(now.replica_count(), 3, "the first change alone landed");
    assert_eq!(
        tasks(c.clone(), id.clone()).await,
        tasks_before + 1,
        "one task"
    );
    let mut kept = processes(&data, &now);
    kept.retain(|p| inst.nodes.iter().any(|n| n.id == p.0));
    assert_eq!(kept, running, "the nodes it had were not touched");
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.split(' ').nth(1)?.parse().ok()
}

/// Pids of every redis-server whose command line names `data` (a node's config lives there),
/// but for the forks of one (an AOF rewrite, a snapshot for a replica), which carry the
/// same command line.
fn redis_servers_under(data: &Path) -> Vec<i32> {
    let needle = data.to_string_lossy().into_owned();
    let mut out: Vec<i32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmd).contains(&needle) && redis_runs(*pid)
        })
        .collect();
    let all = out.clone();
    out.retain(|pid| parent_of(*pid).is_none_or(|parent| !all.contains(&parent)));
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_changes_cut_by_a_kill9_of_crsd_finish_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(
        dir.path(),
        "AKIDreplicasTestSecretId0000000002",
        "replicasTestSecretKey00000000002",
    );
    d.start().await;
    let c = Tc3::like(&d.client());
    let id = c.create(PASSWORD, 3).await;
    // The master node itself (node 0; the stable address leads there too).
    let master = daemon_nodes(&d.data, &id)[0].1;
    let written = set_many(master, "k", 100).await;
    let before = daemon_nodes(&d.data, &id);

    for (to, kept) in [(1usize, 2usize), (3, 2)] {
        let r = c
            .ok(
                "UpgradeInstance",
                json!({"InstanceId": id, "MemSize": 1024, "RedisReplicasNum": to}),
            )
            .await;
        let deal = r["DealId"].as_str().unwrap().to_string();
        // crsd dies once the change runs (or, if it is that quick, has run); the next one
        // finishes it.
        let task = c.newest_task(&id, "029").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = c.ok("DescribeTaskInfo", json!({ "TaskId": task })).await;
            if r["Status"] != "preparing" {
                break;
            }
            assert!(Instant::now() < deadline, "the task does not start: {r}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        d.kill9();
        d.start().await;
        assert_eq!(c.wait_task(task).await, "succeed", "the change to {to}");
        c.wait_deal(&deal).await;
        let e = c.describe(&id).await;
        assert_eq!(e["RedisReplicasNum"], to, "{e}");
        assert_eq!(e["Status"], 2, "{e}");
        let nodes = daemon_nodes(&d.data, &id);
        assert_eq!(nodes.len(), to + 1, "{nodes:?}");
        assert!(
            nodes.iter().all(|n| n.2.is_some()),
            "every node runs: {nodes:?}"
        );
        // The nodes kept are the same processes (the first `kept`: master and oldest replica).
        assert_eq!(nodes[..kept], before[..kept], "adopted, not restarted");
        let pids: Vec<i32> = nodes.iter().filter_map(|n| n.2).collect();
        let mut sorted = pids.clone();
        sorted.sort();
        assert_eq!(
            redis_servers_under(&d.data),
            sorted,
            "no redis-server beyond the instance's nodes"
        );
        for (node, port, _) in &before {
            // A removed node's port is free, unless a node added since took it.
            if !nodes.iter().any(|n| &n.0 == node || n.1 == *port) {
                assert!(port_free(*port), "{node}'s port {port} is free");
            }
        }
        // A replica's link is up before the master streams it what came after its sync
        // (that starts with its first acknowledgement): WAIT asks for it.
        assert_eq!(wait_replicas(master, to).await, to as i64);
        for (_, port, _) in nodes.iter().filter(|n| n.1 != master) {
            until_follows(*port, master).await;
            assert_eq!(contents(*port).await, written, "the replica at {port}");
        }
    }
}
