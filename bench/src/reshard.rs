//! `BENCH_SUITE=reshard` (`make bench-reshard`): online resharding, 3 shards × 1 replica to 5
//! with BENCH_KEYS (1 000 000) keys, crsd next to redis-cli in the same run, BENCH_ROUNDS (1)
//! rounds, the sides alternating which goes first.
//!
//! - By hand: 6 redis-servers joined by `redis-cli --cluster create` (the nodes of
//!   `cluster.rs`), filled, 4 more started and added by `redis-cli --cluster add-node` (two
//!   empty masters, then a replica of each with `--cluster-slave --cluster-master-id`), and
//!   once all 10 know each other `redis-cli --cluster rebalance --cluster-use-empty-masters
//!   --cluster-pipeline 100` is timed alone (the add-nodes and the wait are printed apart).
//!   Keys moved: the keys the two new masters hold afterwards.
//! - crsd: API 3.0 `CreateInstances` (TypeId 18, 3 shards, 1 replica, 1024 MB a shard), the same
//!   keys, then `UpgradeInstance` `RedisShardNum` 5 timed from the call to the task's
//!   `succeed`: this includes starting the four new nodes and their join. crsd moves slots to
//!   the even layout of 5 shards (contiguous ranges, as a new cluster of 5 has), which moves
//!   more keys than redis-cli's rebalance; keys moved: the keys of every slot whose master
//!   changed (`CLUSTER COUNTKEYSINSLOT` before, the slot maps before and after).
//!
//! The figure is keys moved per second. Each side is checked afterwards: the masters' DBSIZEs
//! add up to the keys written, and BENCH_CHECK (2000) keys spread over the key space read back
//! through their slot's master hold their values.

use crate::cluster::{
    create_crsd, create_redis_cli, destroy_crsd, node_conf, At, HandPorts, CRSD_PORTS,
    HAND_PASSWORD, PASSWORD,
};
use crate::ms;
use anyhow::{bail, Context, Result};
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const FROM: usize = 3;
const TO: usize = 5;
/// SETs a pipeline while filling.
const FILL_BATCH: usize = 1000;
const TASK_LIMIT: Duration = Duration::from_secs(1800);
const JOIN_LIMIT: Duration = Duration::from_secs(60);

pub async fn run(dir: &Path) -> Result<()> {
    let keys = crate::env_usize("BENCH_KEYS", 1_000_000).max(1000);
    let rounds = crate::env_usize("BENCH_ROUNDS", 1).max(1);
    let check = crate::env_usize("BENCH_CHECK", 2000).clamp(1, keys);
    let mut cfg = crate::bench_config(dir, CRSD_PORTS)?;
    cfg.instances.port_max = CRSD_PORTS + 20 * rounds as u16 + 40;
    println!(
        "crsd-bench reshard: {rounds} round(s); {FROM} -> {TO} shards x 1 replica with {keys} keys; \
         cluster-node-timeout {} ms (crsd and hand-run)",
        cfg.ha.cluster_node_timeout_ms
    );
    let (running, client) = crate::start_crsd(&cfg).await?;
    let result = measure(&cfg, dir, &running, &client, rounds, keys, check).await;
    running.shutdown(Duration::from_secs(5)).await;
    crate::kill_all(&cfg);
    crate::failover::kill_under(dir);
    result
}

/// One side's resharding.
struct Moved {
    keys: u64,
    took: Duration,
}

impl Moved {
    fn rate(&self) -> f64 {
        self.keys as f64 / self.took.as_secs_f64().max(1e-9)
    }
}

async fn measure(
    cfg: &crsd::config::Config,
    dir: &Path,
    running: &crsd::server::Running,
    client: &crate::Client,
    rounds: usize,
    keys: usize,
    check: usize,
) -> Result<()> {
    let tc3 = client.tc3();
    let svc = running.service.clone();
    let mut ports = HandPorts::new()?;
    let timeout_ms = cfg.ha.cluster_node_timeout_ms;
    let mut hand = Vec::new();
    let mut crsd = Vec::new();
    for round in 0..rounds {
        let crsd_first = round % 2 == 1;
        let mut c = None;
        if crsd_first {
            c = Some(crsd_side(&tc3, &svc, round, keys, check).await?);
        }
        let base = dir.join(format!("reshard-{round}"));
        let h = hand_side(&base, &mut ports, timeout_ms, keys, check).await?;
        let c = match c {
            Some(c) => c,
            None => crsd_side(&tc3, &svc, round, keys, check).await?,
        };
        println!(
            "round {round}: redis-cli rebalance {:>7} keys in {:7.1} ms = {:8.0} keys/s   \
             crsd {:>7} keys in {:7.1} ms = {:8.0} keys/s",
            h.keys,
            ms(h.took),
            h.rate(),
            c.keys,
            ms(c.took),
            c.rate()
        );
        hand.push(h);
        crsd.push(c);
    }
    let total = |v: &[Moved]| {
        let keys: u64 = v.iter().map(|m| m.keys).sum();
        let secs: f64 = v.iter().map(|m| m.took.as_secs_f64()).sum();
        (keys, secs, keys as f64 / secs.max(1e-9))
    };
    let (hk, hs, hr) = total(&hand);
    let (ck, cs, cr) = total(&crsd);
    println!();
    println!("== resharding {FROM} -> {TO} shards, {keys} keys, {rounds} round(s) ==");
    println!(
        "redis-cli --cluster rebalance --cluster-pipeline 100   {hk:>8} keys in {hs:7.2} s = {hr:8.0} keys/s"
    );
    println!(
        "crsd UpgradeInstance RedisShardNum (whole task)         {ck:>8} keys in {cs:7.2} s = {cr:8.0} keys/s"
    );
    println!(
        "ratio crsd / redis-cli keys per second {:5.2} x   (target >= 1.0 x)",
        cr / hr
    );
    Ok(())
}

// ---- by hand ----

async fn hand_side(
    base: &Path,
    ports: &mut HandPorts,
    timeout_ms: u64,
    keys: usize,
    check: usize,
) -> Result<Moved> {
    let (_, mut cluster) = create_redis_cli(&base.join("cli"), ports, timeout_ms)
        .await
        .context("redis-cli --cluster create")?;
    let seed = At::local(cluster.ports[0]);
    fill(&seed, HAND_PASSWORD, keys).await?;

    let added = Instant::now();
    let mut new = Vec::new();
    for _ in 0..4 {
        let port = ports.take()?;
        let conf = node_conf(&base.join(port.to_string()), port, timeout_ms)?;
        cluster.children.push(
            Command::new("redis-server")
                .arg(conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-server")?,
        );
        cluster.ports.push(port);
        new.push(port);
    }
    for &p in &new {
        wait_ping(&At::local(p), HAND_PASSWORD).await?;
    }
    let (masters, replicas) = new.split_at(2);
    for &m in masters {
        redis_cli(&["--cluster", "add-node", &local(m), &local(cluster.ports[0])]).await?;
    }
    wait_known(&cluster.ports[..cluster.ports.len() - 2], HAND_PASSWORD).await?;
    for (&r, &m) in replicas.iter().zip(masters) {
        let id = myid(&At::local(m), HAND_PASSWORD).await?;
        redis_cli(&[
            "--cluster",
            "add-node",
            &local(r),
            &local(cluster.ports[0]),
            "--cluster-slave",
            "--cluster-master-id",
            &id,
        ])
        .await?;
    }
    wait_known(&cluster.ports, HAND_PASSWORD).await?;
    let adding = added.elapsed();

    let t0 = Instant::now();
    redis_cli(&[
        "--cluster",
        "rebalance",
        &local(cluster.ports[0]),
        "--cluster-use-empty-masters",
        "--cluster-pipeline",
        "100",
    ])
    .await?;
    let took = t0.elapsed();
    let mut moved = 0u64;
    for &m in masters {
        moved += dbsize(&At::local(m), HAND_PASSWORD).await?;
    }
    println!(
        "  hand-run: 4 add-nodes and their join {:.1} ms (not counted), rebalance {:.1} ms",
        ms(adding),
        ms(took)
    );
    verify(&seed, HAND_PASSWORD, keys, check).await?;
    drop(cluster);
    Ok(Moved { keys: moved, took })
}

fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

async fn redis_cli(args: &[&str]) -> Result<()> {
    let out = tokio::process::Command::new("redis-cli")
        .args([
            "--user",
            "default",
            "-a",
            HAND_PASSWORD,
            "--no-auth-warning",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .context("running redis-cli")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.contains("[ERR]") {
        bail!(
            "redis-cli {}: {text}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Until each node of `ports` lists them all, none in handshake.
async fn wait_known(ports: &[u16], password: &str) -> Result<()> {
    let deadline = Instant::now() + JOIN_LIMIT;
    for &p in ports {
        loop {
            let text: String = redis::cmd("CLUSTER")
                .arg("NODES")
                .query_async(&mut conn(&At::local(p), password).await?)
                .await?;
            let lines: Vec<&str> = text.lines().collect();
            if lines.len() == ports.len() && !text.contains("handshake") {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "127.0.0.1:{p} knows {} nodes, not {}",
                    lines.len(),
                    ports.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

// ---- crsd ----

async fn crsd_side(
    tc3: &crate::tc3::Tc3Client,
    svc: &std::sync::Arc<crsd_service::Service>,
    round: usize,
    keys: usize,
    check: usize,
) -> Result<Moved> {
    let (_, c) = create_crsd(tc3, svc, round).await?;
    fill(&c.addr, PASSWORD, keys).await?;
    let before = slot_owners(&c.addr, PASSWORD).await?;
    let counts = slot_counts(&before, PASSWORD).await?;

    let t0 = Instant::now();
    tc3.call(
        "UpgradeInstance",
        &json!({ "InstanceId": c.id, "MemSize": 1024, "RedisShardNum": TO,
            "RedisReplicasNum": 1 }),
    )
    .await?;
    let r = tc3
        .call(
            "DescribeTaskList",
            &json!({ "InstanceId": c.id, "TaskTypes": ["028"], "Limit": 100 }),
        )
        .await?;
    let task = r["Tasks"]
        .as_array()
        .and_then(|t| t.iter().filter_map(|t| t["TaskId"].as_i64()).max())
        .context("no changeShards task")?;
    loop {
        let r = tc3
            .call("DescribeTaskInfo", &json!({ "TaskId": task }))
            .await?;
        match r["Status"].as_str() {
            Some("succeed") => break,
            Some("failed") | Some("error") => bail!("changeShards task {task}: {r}"),
            _ => {}
        }
        if t0.elapsed() > TASK_LIMIT {
            bail!("changeShards task {task} not done after {TASK_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    let after = slot_owners(&c.addr, PASSWORD).await?;
    let masters: std::collections::HashSet<&At> = after.iter().collect();
    if masters.len() != TO {
        bail!(
            "after the task {} masters serve slots, not {TO}",
            masters.len()
        );
    }
    let moved: u64 = (0..usize::from(crsd_engine::SLOTS))
        .filter(|s| before[*s] != after[*s])
        .map(|s| counts[s])
        .sum();
    verify(&c.addr, PASSWORD, keys, check).await?;
    destroy_crsd(tc3, &c).await;
    Ok(Moved { keys: moved, took })
}

// ---- both ----

fn key(i: usize) -> String {
    format!("key:{i}")
}

fn value(i: usize) -> String {
    format!("value-{i:012}")
}

/// The master of each of the 16384 slots, from `CLUSTER SLOTS` at `seed`.
async fn slot_owners(seed: &At, password: &str) -> Result<Vec<At>> {
    let (map, _) = crate::cluster::slot_map(&mut conn(seed, password).await?).await?;
    (0..crsd_engine::SLOTS)
        .map(|s| {
            crate::cluster::master_of(&map, s)
                .cloned()
                .with_context(|| format!("slot {s} has no master"))
        })
        .collect()
}

/// Keys in each slot, asked of its master.
async fn slot_counts(owners: &[At], password: &str) -> Result<Vec<u64>> {
    let mut cons: HashMap<&At, MultiplexedConnection> = HashMap::new();
    let mut counts = vec![0u64; owners.len()];
    for at in owners {
        if !cons.contains_key(at) {
            cons.insert(at, conn(at, password).await?);
        }
    }
    for (at, con) in &mut cons {
        let slots: Vec<usize> = (0..owners.len()).filter(|s| &owners[*s] == *at).collect();
        let mut pipe = redis::pipe();
        for s in &slots {
            pipe.cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(*s);
        }
        let got: Vec<u64> = pipe.query_async(con).await?;
        for (s, n) in slots.into_iter().zip(got) {
            counts[s] = n;
        }
    }
    Ok(counts)
}

/// Writes `keys` keys, each to its slot's master, in pipelines.
async fn fill(seed: &At, password: &str, keys: usize) -> Result<()> {
    let t0 = Instant::now();
    let owners = slot_owners(seed, password).await?;
    let mut batches: HashMap<At, Vec<usize>> = HashMap::new();
    let mut cons: HashMap<At, MultiplexedConnection> = HashMap::new();
    for i in 0..keys {
        let at = &owners[usize::from(slot(&key(i)))];
        let batch = batches.entry(at.clone()).or_default();
        batch.push(i);
        if batch.len() == FILL_BATCH {
            let batch = std::mem::take(batch);
            set_all(&mut cons, at, password, &batch).await?;
        }
    }
    for (at, batch) in batches {
        set_all(&mut cons, &at, password, &batch).await?;
    }
    println!(
        "  filled {seed}'s cluster with {keys} keys in {:.1} ms",
        ms(t0.elapsed())
    );
    Ok(())
}

async fn set_all(
    cons: &mut HashMap<At, MultiplexedConnection>,
    at: &At,
    password: &str,
    batch: &[usize],
) -> Result<()> {
    if !cons.contains_key(at) {
        cons.insert(at.clone(), conn(at, password).await?);
    }
    let con = cons.get_mut(at).context("connection")?;
    let mut pipe = redis::pipe();
    for &i in batch {
        pipe.cmd("SET").arg(key(i)).arg(value(i)).ignore();
    }
    pipe.query_async::<()>(con).await?;
    Ok(())
}

/// The masters' DBSIZEs add up to `keys`; `check` keys read back through their slot's master.
async fn verify(seed: &At, password: &str, keys: usize, check: usize) -> Result<()> {
    let owners = slot_owners(seed, password).await?;
    let mut masters: Vec<&At> = owners.iter().collect();
    masters.sort_by_key(|a| (a.host.clone(), a.port));
    masters.dedup();
    let mut total = 0;
    for m in &masters {
        total += dbsize(m, password).await?;
    }
    if total != keys as u64 {
        bail!("{seed}: the masters hold {total} keys, {keys} were written");
    }
    let step = (keys / check).max(1);
    for i in (0..keys).step_by(step) {
        let at = &owners[usize::from(slot(&key(i)))];
        let got: Option<String> = redis::cmd("GET")
            .arg(key(i))
            .query_async(&mut conn(at, password).await?)
            .await?;
        if got.as_deref() != Some(value(i).as_str()) {
            bail!("{seed}: {} is {got:?} at its master {at}", key(i));
        }
    }
    Ok(())
}

async fn dbsize(at: &At, password: &str) -> Result<u64> {
    Ok(redis::cmd("DBSIZE")
        .query_async(&mut conn(at, password).await?)
        .await?)
}

async fn myid(at: &At, password: &str) -> Result<String> {
    Ok(redis::cmd("CLUSTER")
        .arg("MYID")
        .query_async(&mut conn(at, password).await?)
        .await?)
}

async fn wait_ping(at: &At, password: &str) -> Result<()> {
    let deadline = Instant::now() + JOIN_LIMIT;
    loop {
        let pong = async {
            redis::cmd("PING")
                .query_async::<String>(&mut conn(at, password).await?)
                .await
        }
        .await;
        if pong.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing answers at {at}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connection with generous timeouts (pipelines of a thousand commands).
async fn conn(at: &At, password: &str) -> redis::RedisResult<MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_secs(5))
        .set_response_timeout(Duration::from_secs(60));
    redis::Client::open(format!("redis://default:{password}@{at}/"))?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

fn slot(key: &str) -> u16 {
    crate::cluster::crc16(key.as_bytes()) % crsd_engine::SLOTS
}
