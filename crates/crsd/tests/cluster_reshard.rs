//! Online resharding end to end over API 3.0 (real HTTP, real Redis Cluster processes): a
//! 3-shard cluster holding keys grows to 5 shards and shrinks back to 3 through
//! UpgradeInstance `RedisShardNum`, while a client keeps writing distinct keys through the
//! `MOVED` and `ASK` redirections the moves cause. Afterwards every acknowledged key reads
//! back, the masters hold exactly the keys written, and the slots are spread as a new
//! cluster of that many shards spreads them. A shard count the catalog does not sell is
//! refused with nothing changed; a crsd killed (kill -9) in the middle of a scale-out
//! finishes it after its restart without losing a key.

mod common;

use common::cluster::{cluster_config, create_cluster, PASSWORD};
use common::tc3::Tc3;
use common::{port_range, redis_conn, TestCrsd};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const HOST: &str = "127.0.0.1";

/// A cluster client's way with one command: sent to the node that served the slot last (or
/// `entry`), followed to the node a `MOVED` names, sent after `ASKING` to the node an `ASK`
/// names; a node gone (a removed shard) or a cluster busy settling is tried again from
/// `entry`. `None` when it never succeeded.
async fn cluster_cmd(
    conns: &mut HashMap<u16, MultiplexedConnection>,
    entry: u16,
    cmd: &redis::Cmd,
) -> Option<redis::Value> {
    let mut port = entry;
    let mut asking = false;
    for _ in 0..50 {
        if let std::collections::hash_map::Entry::Vacant(e) = conns.entry(port) {
            match redis_conn(HOST, port, PASSWORD).await {
                Ok(c) => {
                    e.insert(c);
                }
                Err(_) => {
                    port = entry;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        let con = conns.get_mut(&port).unwrap();
        let reply = if asking {
            let mut p = redis::pipe();
            p.cmd("ASKING").ignore().add_command(cmd.clone());
            p.query_async::<Vec<redis::Value>>(con)
                .await
                .map(|mut v| v.pop().unwrap_or(redis::Value::Nil))
        } else {
            cmd.query_async::<redis::Value>(con).await
        };
        asking = false;
        match reply {
            Ok(v) => return Some(v),
            Err(e) if matches!(e.code(), Some("MOVED") | Some("ASK")) => {
                asking = e.code() == Some("ASK");
                let target = e.redirect_node().expect("a redirection names a node").0;
                port = target.rsplit(':').next().unwrap().parse().unwrap();
            }
            Err(_) => {
                conns.remove(&port);
                port = entry;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    None
}

/// Writes distinct keys one after the other until `stop`; returns those acknowledged.
async fn writer(entry: u16, prefix: String, stop: Arc<AtomicBool>) -> BTreeMap<String, String> {
    let mut conns = HashMap::new();
    let mut acked = BTreeMap::new();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (k, v) = (format!("{prefix}{i}"), format!("v{i}"));
        if cluster_cmd(&mut conns, entry, redis::cmd("SET").arg(&k).arg(&v))
            .await
            .is_some()
        {
            acked.insert(k, v);
        }
        i += 1;
    }
    acked
}

/// `CLUSTER SLOTS` through `port`: (first slot, last slot, master port) of every range.
async fn slot_map(port: u16) -> Vec<(u16, u16, u16)> {
    let mut c = redis_conn(HOST, port, PASSWORD).await.expect("connect");
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut c)
        .await
        .expect("CLUSTER SLOTS");
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => *i,
        other => panic!("{other:?}"),
    };
    let mut out: Vec<(u16, u16, u16)> = ranges
        .iter()
        .map(|range| match range {
            redis::Value::Array(items) => {
                let master = match &items[2] {
                    redis::Value::Array(m) => int(&m[1]) as u16,
                    other => panic!("{other:?}"),
                };
                (int(&items[0]) as u16, int(&items[1]) as u16, master)
            }
            other => panic!("{other:?}"),
        })
        .collect();
    out.sort();
    out
}

/// The slot map is the even spread of `n` shards, one master each.
async fn assert_even(port: u16, n: usize) {
    let map = slot_map(port).await;
    let ranges: Vec<(u16, u16)> = map.iter().map(|(lo, hi, _)| (*lo, *hi)).collect();
    let even: Vec<(u16, u16)> = (0..n).map(|i| crsd_engine::even_slots(i, n)).collect();
    assert_eq!(ranges, even, "{map:?}");
    let mut masters: Vec<u16> = map.iter().map(|(_, _, m)| *m).collect();
    masters.sort_unstable();
    masters.dedup();
    assert_eq!(masters.len(), n, "{map:?}");
}

/// Keys on each master of the slot map, together.
async fn keys_on_masters(port: u16) -> i64 {
    let mut sum = 0;
    for (_, _, master) in slot_map(port).await {
        let mut c = redis_conn(HOST, master, PASSWORD).await.expect("connect");
        sum += redis::cmd("DBSIZE")
            .query_async::<i64>(&mut c)
            .await
            .unwrap();
    }
    sum
}

/// Redis Cluster's key hash slot (CRC16/XMODEM of the whole key: no hash tags here).
fn slot_of(key: &str) -> u16 {
    let mut crc = 0u16;
    for b in key.as_bytes() {
        crc ^= u16::from(*b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

/// `n` keys written straight to their masters, pipelined: the data the moves carry.
async fn preload(port: u16, prefix: &str, n: usize) -> BTreeMap<String, String> {
    let map = slot_map(port).await;
    let mut by_master: HashMap<u16, Vec<(String, String)>> = HashMap::new();
    let mut all = BTreeMap::new();
    for i in 0..n {
        let (k, v) = (format!("{prefix}{i}"), format!("value-{i}"));
        let slot = slot_of(&k);
        let master = map
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .unwrap()
            .2;
        by_master
            .entry(master)
            .or_default()
            .push((k.clone(), v.clone()));
        all.insert(k, v);
    }
    for (master, kvs) in by_master {
        let mut c = redis_conn(HOST, master, PASSWORD).await.expect("connect");
        for chunk in kvs.chunks(1000) {
            let mut p = redis::pipe();
            for (k, v) in chunk {
                p.cmd("SET").arg(k).arg(v).ignore();
            }
            p.query_async::<()>(&mut c).await.expect("preload");
        }
    }
    all
}

/// Every key of `keys` reads back with its value.
async fn assert_readable(port: u16, keys: &BTreeMap<String, String>) {
    let mut conns = HashMap::new();
    let mut missing = Vec::new();
    for (k, v) in keys {
        match cluster_cmd(&mut conns, port, redis::cmd("GET").arg(k)).await {
            Some(redis::Value::BulkString(b)) if b == v.as_bytes() => {}
            other => missing.push((k.clone(), other)),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} keys lost, e.g. {:?}",
        missing.len(),
        keys.len(),
        &missing[..missing.len().min(5)]
    );
}

/// UpgradeInstance's shard change, started: its task id.
async fn change_shards(c: &Tc3, id: &str, shards: i64) -> i64 {
    let r = c
        .ok(
            "UpgradeInstance",
            json!({ "InstanceId": id, "MemSize": 1024, "RedisShardNum": shards,
                "RedisReplicasNum": 1 }),
        )
        .await;
    assert!(r["DealId"].is_string(), "{r}");
    c.newest_task(id, "028").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_are_added_and_removed_while_a_client_writes() {
    let (dir, cfg) = cluster_config();
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;
    let port = c.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let preloaded = preload(port, "pre-", 100_000).await;

    // Not sold: refused, nothing changes.
    c.err(
        "UpgradeInstance",
        json!({ "InstanceId": id, "MemSize": 1024, "RedisShardNum": 4 }),
        "InvalidParameterValue",
    )
    .await;
    c.err(
        "UpgradeInstance",
        json!({ "InstanceId": id, "MemSize": 2048, "RedisShardNum": 5 }),
        "InvalidParameterValue",
    )
    .await;
    assert_eq!(c.describe(&id).await["RedisShardNum"], 3);
    assert_even(port, 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let written = tokio::spawn(writer(port, "w-".into(), stop.clone()));

    for (shards, nodes) in [(5, 10), (3, 6)] {
        let started = Instant::now();
        let task = change_shards(&c, &id, shards).await;
        assert_eq!(c.wait_task(task).await, "succeed");
        eprintln!(
            "{} -> {shards} shards: task took {:.1} s",
            if shards == 5 { 3 } else { 5 },
            started.elapsed().as_secs_f64()
        );
        let d = c.describe(&id).await;
        assert_eq!(d["RedisShardNum"], shards, "{d}");
        assert_eq!(d["Status"], 2, "{d}");
        assert_even(port, shards as usize).await;
        let listed = c
            .ok("DescribeInstanceShards", json!({ "InstanceId": id }))
            .await;
        assert_eq!(
            listed["InstanceShards"].as_array().unwrap().len(),
            nodes,
            "{listed}"
        );
    }

    stop.store(true, Ordering::Relaxed);
    let acked = written.await.unwrap();
    assert!(
        acked.len() > 100,
        "the writer kept writing: {}",
        acked.len()
    );
    eprintln!("{} keys written during the changes", acked.len());
    assert_readable(port, &preloaded).await;
    assert_readable(port, &acked).await;
    assert_eq!(
        keys_on_masters(port).await,
        (preloaded.len() + acked.len()) as i64
    );
}

/// kill -9 of crsd (the real binary) while slots move: after its restart the task ends the
/// scale-out with every slot where it belongs and every key there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_out_cut_by_a_kill_9_of_crsd_ends_with_every_key() {
    const SECRET_ID: &str = "AKIDreshardFaultTest0000000000000001";
    const SECRET_KEY: &str = "reshardFaultTestSecretKey000000001";
    let dir = tempfile::tempdir().unwrap();
    let mut d = common::daemon::Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    // Node ports with room for their cluster buses below the ephemeral range.
    let (lo, hi) = loop {
        let r = port_range(40);
        if r.1 < 22000 {
            break r;
        }
    };
    let toml = dir.path().join("crsd.toml");
    let text = std::fs::read_to_string(&toml).unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("port_min") {
                format!("port_min = {lo}\n")
            } else if l.starts_with("port_max") {
                format!("port_max = {hi}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&toml, text).unwrap();
    d.start().await;
    let c = Tc3::like(&d.client());
    let id = create_cluster(&c, 3).await;
    let port = c.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let preloaded = preload(port, "pre-", 100_000).await;

    let task = change_shards(&c, &id, 5).await;
    // Killed while slots move: some moved, some not, maybe one half-moved.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let map = slot_map(port).await;
        let masters: std::collections::HashSet<u16> = map.iter().map(|r| r.2).collect();
        if masters.len() > 3 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.kill9();
    d.start().await;
    let c = Tc3::like(&d.client());
    assert_eq!(c.wait_task(task).await, "succeed");
    assert_eq!(c.describe(&id).await["RedisShardNum"], 5);
    assert_even(port, 5).await;
    assert_readable(port, &preloaded).await;
    assert_eq!(keys_on_masters(port).await, preloaded.len() as i64);
    c.ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
}

/// A backup of 3 shards cannot be restored into the same cluster once it has 5: the
/// refusal names the layout, and the data and the slots stay as they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_another_shard_layout_is_refused_before_anything_changes() {
    let (dir, cfg) = cluster_config();
    let crsd = TestCrsd::start_with(dir, cfg).await;
    let c = Tc3::like(&crsd.client());
    let id = create_cluster(&c, 3).await;
    let port = c.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let keys = preload(port, "layout-", 2_000).await;
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

    let task = change_shards(&c, &id, 5).await;
    assert_eq!(c.wait_task(task).await, "succeed");
    assert_even(port, 5).await;

    let r = c
        .err(
            "RestoreInstance",
            json!({ "InstanceId": id, "BackupId": backup_id, "Password": PASSWORD }),
            "InvalidParameterValue",
        )
        .await;
    let msg = r["Error"]["Message"].as_str().unwrap_or_default();
    assert!(msg.contains("shard layout"), "{r}");
    // Nothing changed: the instance runs with its five shards and every key.
    let d = c.describe(&id).await;
    assert_eq!(
        (d["Status"].clone(), d["RedisShardNum"].clone()),
        (json!(2), json!(5))
    );
    assert_even(port, 5).await;
    assert_readable(port, &keys).await;
    assert_eq!(keys_on_masters(port).await, keys.len() as i64);
}
