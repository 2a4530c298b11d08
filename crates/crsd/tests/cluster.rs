//! The cluster edition end to end over API 3.0 (TC3 signatures, real HTTP, real Redis
//! Cluster processes): a 3-shard cluster is created, described shard by shard, written and
//! read across every slot through the stable address and the MOVED redirections it leads
//! to, cleared on every shard, survives a kill -9 of a shard's master, and is deleted;
//! what the edition does not offer yet, and what the catalog does not sell, is refused with
//! nothing changed.

mod common;

use common::cluster::{cluster_config, create_cluster, PASSWORD};
use common::tc3::Tc3;
use common::{redis_conn, TestCrsd};
use redis::aio::MultiplexedConnection;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// v2's rule: 8-16 characters.
const V2_PASSWORD: &str = "Cluster2024pw";
const HOST: &str = "127.0.0.1";

/// A crsd whose node ports leave room for their cluster buses.
async fn crsd() -> TestCrsd {
    let (dir, cfg) = cluster_config();
    TestCrsd::start_with(dir, cfg).await
}

/// A cluster client's way with one command: sent to `port`, followed to the node a `MOVED`
/// names (connections kept per port).
async fn cluster_cmd(
    conns: &mut HashMap<u16, MultiplexedConnection>,
    port: u16,
    cmd: &redis::Cmd,
) -> redis::Value {
    let mut port = port;
    for _ in 0..5 {
        if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(port) {
            e.insert(redis_conn(HOST, port, PASSWORD).await.expect("connect"));
        }
        let con = conns.get_mut(&port).unwrap();
        match cmd.query_async::<redis::Value>(con).await {
            Ok(v) => return v,
            Err(e) if e.code() == Some("MOVED") => {
                let target = e.redirect_node().expect("MOVED names a node").0.to_string();
                port = target.rsplit(':').next().unwrap().parse().unwrap();
            }
            Err(e) => panic!("a command on {port}: {e}"),
        }
    }
    panic!("a command was redirected too often");
}

/// `CLUSTER SLOTS` through `port`: (first slot, last slot, master port) of every range.
async fn slot_map(port: u16) -> Vec<(i64, i64, u16)> {
    let mut c = redis_conn(HOST, port, PASSWORD).await.expect("connect");
    let v: Vec<(i64, i64, Vec<redis::Value>)> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async::<Vec<redis::Value>>(&mut c)
        .await
        .expect("CLUSTER SLOTS")
        .into_iter()
        .map(|range| match range {
            redis::Value::Array(items) => {
                let int = |v: &redis::Value| match v {
                    redis::Value::Int(i) => *i,
                    other => panic!("{other:?}"),
                };
                let master = match &items[2] {
                    redis::Value::Array(m) => m.clone(),
                    other => panic!("{other:?}"),
                };
                (int(&items[0]), int(&items[1]), master)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    let mut out: Vec<(i64, i64, u16)> = v
        .into_iter()
        .map(|(lo, hi, m)| {
            let port = match &m[1] {
                redis::Value::Int(p) => *p as u16,
                other => panic!("{other:?}"),
            };
            (lo, hi, port)
        })
        .collect();
    out.sort();
    out
}

async fn write_keys(port: u16, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let mut conns = HashMap::new();
    let mut written = BTreeMap::new();
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i}"), format!("v{i}"));
        cluster_cmd(&mut conns, port, redis::cmd("SET").arg(&k).arg(&v)).await;
        written.insert(k, v);
    }
    written
}

async fn read_keys(port: u16, keys: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut conns = HashMap::new();
    let mut read = BTreeMap::new();
    for k in keys.keys() {
        if let redis::Value::BulkString(b) =
            cluster_cmd(&mut conns, port, redis::cmd("GET").arg(k)).await
        {
            read.insert(k.clone(), String::from_utf8(b).unwrap());
        }
    }
    read
}

/// Keys on each master of the slot map.
async fn keys_per_master(port: u16) -> Vec<i64> {
    let mut out = Vec::new();
    for (_, _, master) in slot_map(port).await {
        let mut c = redis_conn(HOST, master, PASSWORD).await.expect("connect");
        out.push(redis::cmd("DBSIZE").query_async(&mut c).await.unwrap());
    }
    out
}

/// The pid of the redis-server at `port` (INFO server).
async fn pid_on_port(port: u16) -> u32 {
    let mut c = redis_conn(HOST, port, PASSWORD).await.expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut c)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("process_id")
        .trim()
        .parse()
        .unwrap()
}

/// Redis Cluster's key hash (CRC16/XMODEM).
fn crc16(data: &[u8]) -> u16 {
    let mut crc = 0u16;
    for b in data {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A hash tag whose key falls in `slot`.
fn key_in_slot(slot: u16) -> String {
    (0u32..)
        .map(|i| format!("t{i}"))
        .find(|k| crc16(k.as_bytes()) % 16384 == slot)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_shard_cluster_serves_every_slot_through_its_address() {
    let crsd = crsd().await;
    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;

    let d = c.describe(&id).await;
    assert_eq!(d["Type"], 18, "{d}");
    assert_eq!(d["ProductType"], "cluster");
    assert_eq!(d["RedisShardNum"], 3);
    assert_eq!(d["RedisReplicasNum"], 1);
    assert_eq!(d["RedisShardSize"], 1024);
    assert_eq!(d["Size"], 3072.0);
    assert_eq!(d["Status"], 2);
    let port = d["Port"].as_u64().unwrap() as u16;

    // The stable address leads to a node that knows the whole slot map: three masters,
    // every slot once, in even ranges.
    let map = slot_map(port).await;
    assert_eq!(
        map.iter().map(|(lo, hi, _)| (*lo, *hi)).collect::<Vec<_>>(),
        vec![(0, 5460), (5461, 10922), (10923, 16383)]
    );
    let shards = c
        .ok("DescribeInstanceShards", json!({ "InstanceId": id }))
        .await;
    let list = shards["InstanceShards"].as_array().unwrap();
    assert_eq!(list.len(), 6, "{shards}");
    let masters: Vec<&Value> = list.iter().filter(|s| s["Role"] == 0).collect();
    assert_eq!(masters.len(), 3, "{shards}");
    let slots: Vec<&str> = masters
        .iter()
        .map(|m| m["Slots"].as_str().unwrap())
        .collect();
    for range in ["0-5460", "5461-10922", "10923-16383"] {
        assert!(slots.contains(&range), "{slots:?}");
    }

    // Keys across every shard, read back through redirections.
    let written = write_keys(port, "k", 600).await;
    assert_eq!(read_keys(port, &written).await, written);
    let per_master = keys_per_master(port).await;
    assert_eq!(per_master.iter().sum::<i64>(), 600);
    assert!(per_master.iter().all(|n| *n > 100), "{per_master:?}");

    // ClearInstance empties every shard.
    let r = c
        .ok(
            "ClearInstance",
            json!({ "InstanceId": id, "Password": PASSWORD }),
        )
        .await;
    c.wait_task(r["TaskId"].as_i64().unwrap()).await;
    assert_eq!(keys_per_master(port).await, vec![0, 0, 0]);

    // Not offered: refused before anything changes.
    c.err(
        "UpgradeInstance",
        json!({ "InstanceId": id, "MemSize": 1024, "RedisShardNum": 4 }),
        "InvalidParameterValue",
    )
    .await;
    assert_eq!(c.describe(&id).await["RedisShardNum"], 3);

    // Deleted: every node gone.
    let r = c
        .ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    let _ = r;
    let deadline = Instant::now() + Duration::from_secs(30);
    while redis_conn(HOST, map[0].2, PASSWORD).await.is_ok() {
        assert!(Instant::now() < deadline, "a node still answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shard_master_leaves_every_slot_writable_again() {
    let crsd = crsd().await;
    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;
    let port = c.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let written = write_keys(port, "before", 300).await;

    // kill -9 of shard 1's master.
    let victim = slot_map(port).await[1].2;
    let pid = pid_on_port(victim).await;
    // SAFETY: plain syscall on the pid of the redis-server listening on the victim's port.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    let started = Instant::now();
    // Every slot writable again (the cluster fails over, or crsd brings the node back).
    let deadline = started + Duration::from_secs(30);
    loop {
        let mut conns = HashMap::new();
        let mut all = true;
        for (lo, _, master) in slot_map(port).await {
            let key = format!("{{{}}}probe", key_in_slot(lo as u16));
            let con = match conns.entry(master) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    match redis_conn(HOST, master, PASSWORD).await {
                        Ok(c) => e.insert(c),
                        Err(_) => {
                            all = false;
                            continue;
                        }
                    }
                }
            };
            if redis::cmd("SET")
                .arg(&key)
                .arg("x")
                .query_async::<()>(con)
                .await
                .is_err()
            {
                all = false;
            }
        }
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "slots still not writable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing acknowledged was lost.
    assert_eq!(read_keys(port, &written).await, written);
    // The cluster failed the shard over (crsd left it to the cluster while the replica
    // lived): the slots moved to the killed master's replica.
    let after = slot_map(port).await;
    assert_ne!(
        after[1].2, victim,
        "shard 1 is served by its former replica"
    );
    // Six nodes again, each shard a master and a replica.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let shards = c
            .ok("DescribeInstanceShards", json!({ "InstanceId": id }))
            .await;
        let list = shards["InstanceShards"].as_array().unwrap().clone();
        let connected = list.iter().filter(|s| s["Connected"] == 1).count();
        if connected == 6 && list.iter().filter(|s| s["Role"] == 0).count() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the killed node is not back: {shards}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The database follows the cluster: three masters, one per shard, none of them the
    // killed node.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = c
            .ok("DescribeInstanceNodeInfo", json!({ "InstanceId": id }))
            .await;
        let masters: Vec<u16> = slot_map(port).await.iter().map(|s| s.2).collect();
        let recorded = info["Redis"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|n| n["NodeRole"] == "master")
            .count();
        if recorded == 3 && !masters.contains(&victim) {
            break;
        }
        assert!(Instant::now() < deadline, "{info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // KillMasterGroup names the shards; every slot is served again when its task ends.
    c.err(
        "KillMasterGroup",
        json!({ "InstanceId": id, "Password": PASSWORD }),
        "InvalidParameterValue",
    )
    .await;
    let before = slot_map(port).await;
    let r = c
        .ok(
            "KillMasterGroup",
            json!({ "InstanceId": id, "Password": PASSWORD, "ShardIds": [2] }),
        )
        .await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    let after = slot_map(port).await;
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].2, before[0].2, "shard 0 untouched");
    assert_ne!(
        after[2].2, before[2].2,
        "shard 2 failed over to its replica"
    );
    assert_eq!(read_keys(port, &written).await, written);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layouts_the_catalog_does_not_sell_are_refused_with_nothing_changed() {
    let crsd = crsd().await;
    let c = Tc3::like(&crsd.client());
    let before = c.ok("DescribeInstances", json!({})).await["TotalCount"].clone();
    for (shards, replicas) in [(4, 1), (3, 6), (0, 1)] {
        let r = c
            .err(
                "CreateInstances",
                json!({"TypeId": 18, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
                    "BillingMode": 1, "ZoneId": 100002, "Password": PASSWORD,
                    "RedisShardNum": shards, "RedisReplicasNum": replicas}),
                "InvalidParameterValue",
            )
            .await;
        let _ = r;
    }
    assert_eq!(
        c.ok("DescribeInstances", json!({})).await["TotalCount"],
        before
    );
    // The product is listed with its shard counts.
    let p = c.ok("DescribeProductInfo", json!({})).await;
    let products: Vec<&Value> = p["RegionSet"][0]["ZoneSet"][0]["ProductSet"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let cluster = products
        .iter()
        .find(|p| p["Type"] == 18)
        .expect("TypeId 18 listed");
    assert_eq!(
        cluster["ShardNum"],
        json!(["1", "3", "5", "8", "12", "16", "24", "32"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_buys_a_cluster_by_its_total_memory() {
    let crsd = crsd().await;
    let v2 = crsd.client();
    let v = v2
        .ok(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "1"),
                ("memSize", "3072"),
                ("goodsNum", "1"),
                ("period", "1"),
                ("password", V2_PASSWORD),
            ],
        )
        .await;
    let deal = v["data"]["dealId"].as_str().unwrap().to_string();
    let ids = v2.wait_deal(&deal).await;
    let inst = v2.describe_one(&ids[0]).await;
    assert_eq!(inst["typeId"], 1, "{inst}");
    assert_eq!(inst["size"], 3072, "{inst}");
    // Three shards of 1024 MB.
    let c = Tc3::like(&v2);
    let d = c.describe(&ids[0]).await;
    assert_eq!(
        (d["RedisShardNum"].clone(), d["RedisShardSize"].clone()),
        (json!(3), json!(1024))
    );
    let port = inst["port"].as_u64().unwrap() as u16;
    let mut c0 = redis_conn(HOST, port, V2_PASSWORD).await.expect("connect");
    let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut c0)
        .await
        .expect("CLUSTER SLOTS");
    assert_eq!(slots.len(), 3, "three shards serve the slots");
}

/// Node ids of the cluster as the node at `port` lists them, sorted.
async fn node_ids(port: u16) -> Vec<String> {
    let mut c = redis_conn(HOST, port, PASSWORD).await.expect("connect");
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await
        .unwrap();
    let mut ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backup_is_one_rdb_per_shard_and_its_restore_keeps_the_nodes() {
    let crsd = crsd().await;
    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;
    let port = c.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let kept = write_keys(port, "kept-", 600).await;
    let ids_before = node_ids(port).await;
    let map_before = slot_map(port).await;

    let r = c
        .ok("ManualBackupInstance", json!({ "InstanceId": id }))
        .await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    let list = c
        .ok("DescribeInstanceBackups", json!({ "InstanceId": id }))
        .await;
    let backup_id = list["BackupSet"][0]["BackupId"]
        .as_str()
        .unwrap()
        .to_string();

    // One file per shard, each an RDB of its announced size.
    let urls = c
        .ok(
            "DescribeBackupUrl",
            json!({ "InstanceId": id, "BackupId": backup_id }),
        )
        .await;
    let infos = urls["BackupInfos"].as_array().unwrap();
    assert_eq!(infos.len(), 3, "{urls}");
    for info in infos {
        let body = reqwest::get(info["DownloadUrl"].as_str().unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(body.starts_with(b"REDIS"), "an RDB file");
        assert_eq!(body.len() as u64, info["FileSize"].as_u64().unwrap());
    }
    // The operator's `crsd backup path`: a file each shard, each on this host.
    let op = common::service(&crsd)
        .operator_backup(&backup_id)
        .await
        .unwrap();
    assert_eq!(op.paths.len(), 3, "{:?}", op.paths);
    for p in &op.paths {
        assert!(std::fs::read(p).unwrap().starts_with(b"REDIS"), "{p:?}");
    }

    // v2: a cluster's backup downloads once exported (seed 003), one link per shard.
    let v2 = crsd.client();
    let params = [("redisId", id.as_str()), ("backupId", backup_id.as_str())];
    v2.err("GetBackupDownloadUrl", &params, 5100, Some(10711))
        .await;
    let v = v2.ok("ExportRedisBackup", &params).await;
    let task: i64 = v["data"]["requestId"]
        .as_i64()
        .or_else(|| v["data"]["requestId"].as_str().and_then(|s| s.parse().ok()))
        .expect("a task id");
    assert_eq!(v2.wait_task(task).await, 2, "the export succeeds");
    let v = v2
        .ok(
            "GetRedisBackupList",
            &[("redisId", id.as_str()), ("limit", "10"), ("offset", "0")],
        )
        .await;
    assert_eq!(v["data"]["redisBackupSet"][0]["status"], 4, "exported: {v}");
    let v = v2.ok("GetBackupDownloadUrl", &params).await;
    assert_eq!(
        v["data"]["extranet"].as_array().map(Vec::len),
        Some(3),
        "{v}"
    );
    // An exported backup is not exported again.
    v2.err("ExportRedisBackup", &params, 5100, Some(10711))
        .await;

    // Changes after the backup: new keys, removed ones.
    let extra = write_keys(port, "later-", 200).await;
    let mut conns = HashMap::new();
    for k in kept.keys().take(100) {
        cluster_cmd(&mut conns, port, redis::cmd("DEL").arg(k)).await;
    }
    drop(conns);

    let r = c
        .ok(
            "RestoreInstance",
            json!({ "InstanceId": id, "BackupId": backup_id, "Password": PASSWORD }),
        )
        .await;
    assert_eq!(c.wait_task(r["TaskId"].as_i64().unwrap()).await, "succeed");
    // Exactly the backup's keys, on the same nodes with the same slots.
    assert_eq!(read_keys(port, &kept).await, kept);
    assert!(
        read_keys(port, &extra).await.is_empty(),
        "later keys are gone"
    );
    assert_eq!(keys_per_master(port).await.iter().sum::<i64>(), 600);
    assert_eq!(node_ids(port).await, ids_before);
    assert_eq!(slot_map(port).await, map_before);
}

/// UpgradeInstance's replica change of a cluster, waited for.
async fn change_replicas(c: &Tc3, id: &str, replicas: i64) {
    let r = c
        .ok(
            "UpgradeInstance",
            json!({ "InstanceId": id, "MemSize": 1024, "RedisShardNum": 3,
                "RedisReplicasNum": replicas }),
        )
        .await;
    assert!(r["DealId"].is_string(), "{r}");
    let task = c.newest_task(id, "029").await;
    assert_eq!(c.wait_task(task).await, "succeed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_every_shard_are_added_and_removed_live() {
    let crsd = crsd().await;
    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;
    let port = c.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let written = write_keys(port, "r-", 300).await;

    change_replicas(&c, &id, 2).await;
    assert_eq!(c.describe(&id).await["RedisReplicasNum"], 2);
    assert_eq!(node_ids(port).await.len(), 9, "three shards of three nodes");
    let shards = c
        .ok("DescribeInstanceShards", json!({ "InstanceId": id }))
        .await;
    let list = shards["InstanceShards"].as_array().unwrap();
    assert_eq!(list.len(), 9);
    for shard in ["0", "1", "2"] {
        let of: Vec<&Value> = list.iter().filter(|s| s["ShardId"] == shard).collect();
        assert_eq!(of.len(), 3, "{shards}");
        let keys: Vec<i64> = of.iter().map(|s| s["Keys"].as_i64().unwrap()).collect();
        assert!(
            keys.iter().all(|k| *k == keys[0]),
            "every node of shard {shard} holds its keys: {keys:?}"
        );
    }

    change_replicas(&c, &id, 1).await;
    assert_eq!(c.describe(&id).await["RedisReplicasNum"], 1);
    // The removed nodes are gone from the cluster too (forgotten, not failing).
    let deadline = Instant::now() + Duration::from_secs(10);
    while node_ids(port).await.len() != 6 {
        assert!(Instant::now() < deadline, "removed nodes are still known");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(read_keys(port, &written).await, written);
    assert_eq!(slot_map(port).await.len(), 3);
}
