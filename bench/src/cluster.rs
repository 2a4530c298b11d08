//! `BENCH_SUITE=cluster` (`make bench-cluster`): the cluster edition (3 shards × 1 replica)
//! next to the same Redis Cluster made by hand, in one run on this machine.
//!
//! BENCH_DRILLS (5) rounds. In each, the creates and then the drills alternate which side goes
//! first, so crsd and the hand-run reference see the same machine:
//!
//! 1. Create → running. crsd: API 3.0 `CreateInstances` (TypeId 18, `RedisShardNum` 3,
//!    `RedisReplicasNum` 1, `MemSize` 1024) until `DescribeInstances` says Status 2 and the
//!    instance's address answers `cluster_state:ok`. By hand: the same 6 redis-servers (AOF
//!    on, a password for `default`, replicas logging in to their masters as `repl` with
//!    `masteruser`/`masterauth`, crsd's `cluster-node-timeout`), timed from their spawn until
//!    all 6 say `cluster_state:ok` and show the full topology (3 masters serving the 16384
//!    slots, 3 replicas following them, nothing failing or in handshake, every replica's link
//!    up), once joined by `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`
//!    and once by the bench's own calls (`SET-CONFIG-EPOCH` and `ADDSLOTSRANGE` on the
//!    masters, `MEET` from the first, `REPLICATE` retried every 10 ms, no other waits). After
//!    crsd's Status 2 the same full-topology check runs on its 6 nodes, untimed: a line says
//!    how much later it held if it did not at once.
//! 2. Shard failover. A slot-aware prober writes one `SET` into each of the three slot ranges
//!    every 5 ms, to the master `CLUSTER SLOTS` names for it (200 ms connect and reply
//!    timeouts, a new connection after any error, the slot map fetched again after any error
//!    from the seed address first and then every node it has seen, a `MOVED` followed once).
//!    500 ms in, the master of slot 5461 is killed with SIGKILL. The outage is the time from
//!    the kill to the end of the first round sent after it in which every range accepted its
//!    write. On crsd's cluster crsd keeps running, so its supervisor may start the killed node
//!    again before the cluster fails it over: the drill prints when the node answered again
//!    and, from `CLUSTER NODES` once the cluster has settled, whether its replica was
//!    promoted or the node kept its slots. The hand-run cluster (the redis-cli one of the
//!    round) has nobody to restart the node.
//!
//! BENCH_NODE_TIMEOUT sets `ha.cluster_node_timeout_ms` (crsd's default 1000), for crsd and the
//! hand-run nodes alike; BENCH_SUPERVISE_MS sets crsd's supervisor period
//! (`loops.supervise_every_ms`, 1000), e.g. long enough to see the cluster's own failover of
//! crsd's nodes without the supervisor's restart racing it.

use crate::{ms, percentile};
use anyhow::{bail, Context, Result};
use crsd::config::Config;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const PASSWORD: &str = "Bench2024(x";
pub(crate) const HAND_PASSWORD: &str = "userpw";
/// The hand-run nodes' users: the customer's `default`, and `repl` for replication.
const ACL_FILE: &str = "\
user default on >userpw ~* &* +@all
user repl on >replpw resetchannels -@all +psync +replconf +ping
";
const SHARDS: usize = 3;
const NODES: usize = 6;
/// crsd's node ports (and its instances' addresses) from here; the hand-run nodes' from
/// [`HAND_PORTS`]. Both below 22768, so that their cluster buses (10000 above) stay below
/// the kernel's ephemeral range.
pub(crate) const CRSD_PORTS: u16 = 20000;
const HAND_PORTS: (u16, u16) = (21000, 22000);
const POLL: Duration = Duration::from_millis(10);
const PROBE_EVERY: Duration = Duration::from_millis(5);
const CLIENT_TIMEOUT: Duration = Duration::from_millis(200);
const BEFORE_KILL: Duration = Duration::from_millis(500);
/// The slot whose master each drill kills (the second shard's first slot).
const VICTIM_SLOT: u16 = 5461;
const CREATE_LIMIT: Duration = Duration::from_secs(60);
const OUTAGE_LIMIT: Duration = Duration::from_secs(30);
const SETTLE_LIMIT: Duration = Duration::from_secs(30);

pub async fn run(dir: &Path) -> Result<()> {
    let rounds = crate::env_usize("BENCH_DRILLS", 5).max(1);
    let mut cfg = crate::bench_config(dir, CRSD_PORTS)?;
    // Per cluster 6 nodes and its address; isolated clusters keep their ports.
    cfg.instances.port_max = (CRSD_PORTS + 7 * rounds as u16 + 40).min(HAND_PORTS.0 - 1);
    if let Some(t) = std::env::var("BENCH_NODE_TIMEOUT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.ha.cluster_node_timeout_ms = t;
    }
    if let Some(t) = std::env::var("BENCH_SUPERVISE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.loops.supervise_every_ms = t;
    }
    println!(
        "crsd-bench cluster: {rounds} rounds; {SHARDS} shards x 1 replica; cluster-node-timeout {} ms \
         (crsd and hand-run); crsd's supervisor pass every {} ms",
        cfg.ha.cluster_node_timeout_ms, cfg.loops.supervise_every_ms
    );
    println!(
        "prober: one SET per slot range every {} ms, {} ms timeouts, new connection and slot map after any error",
        PROBE_EVERY.as_millis(),
        CLIENT_TIMEOUT.as_millis()
    );

    let mut server = None;
    let result = measure(&cfg, dir, rounds, &mut server).await;
    if let Some(r) = server.take() {
        r.shutdown(Duration::from_secs(5)).await;
    }
    // crsd's nodes by their pid files (and their cgroups), then whatever else is left.
    crate::kill_all(&cfg);
    crate::failover::kill_under(dir);
    result
}

/// An address clients connect to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct At {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl At {
    pub(crate) fn local(port: u16) -> At {
        At {
            host: "127.0.0.1".into(),
            port,
        }
    }
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// One round's creates.
struct Created {
    redis_cli: Duration,
    hand_rolled: Duration,
    crsd: Duration,
    /// How long after crsd's Status 2 all of its nodes showed the full topology.
    crsd_topology_later: Duration,
}

/// What one drill saw.
struct Drill {
    outage: Duration,
    /// When the killed node answered PING again, after the kill.
    back_after: Option<Duration>,
    /// Its replica is the shard's master now.
    promoted: bool,
    /// What the killed node is once the cluster has settled.
    killed_now: &'static str,
}

async fn measure(
    cfg: &Config,
    dir: &Path,
    rounds: usize,
    server: &mut Option<crsd::server::Running>,
) -> Result<()> {
    let (running, client) = crate::start_crsd(cfg).await?;
    let svc = running.service.clone();
    *server = Some(running);
    let tc3 = client.tc3();
    let mut ports = HandPorts::new()?;
    let timeout_ms = cfg.ha.cluster_node_timeout_ms;
    // The killed node of crsd's cluster is back by the supervisor's next pass.
    let settle = SETTLE_LIMIT + Duration::from_millis(cfg.loops.supervise_every_ms);

    let mut created = Vec::new();
    let mut crsd_drills = Vec::new();
    let mut hand_drills = Vec::new();
    for round in 0..rounds {
        crate::wait_warm_pool(&svc).await?;
        let crsd_first = round % 2 == 1;
        // Creates.
        let base = dir.join(format!("hand-{round}"));
        let mut crsd_cluster = None;
        if crsd_first {
            crsd_cluster = Some(create_crsd(&tc3, &svc, round).await?);
        }
        let (redis_cli, hand) = create_redis_cli(&base.join("cli"), &mut ports, timeout_ms)
            .await
            .context("redis-cli --cluster create")?;
        let (hand_rolled, rolled) = create_hand_rolled(&base.join("own"), &mut ports, timeout_ms)
            .await
            .context("the hand-rolled join")?;
        drop(rolled);
        let (crsd, c) = match crsd_cluster {
            Some(c) => c,
            None => create_crsd(&tc3, &svc, round).await?,
        };
        let later = Instant::now();
        wait_formed(&c.nodes, PASSWORD, later + CREATE_LIMIT)
            .await
            .context("crsd's cluster never showed the full topology on all nodes")?;
        let r = Created {
            redis_cli,
            hand_rolled,
            crsd,
            crsd_topology_later: later.elapsed(),
        };
        println!(
            "round {round}: create  redis-cli {:7.1} ms  hand-rolled {:7.1} ms  crsd {:7.1} ms{}",
            ms(r.redis_cli),
            ms(r.hand_rolled),
            ms(r.crsd),
            if r.crsd_topology_later > POLL * 2 {
                format!(
                    " (full topology on all its nodes {:.0} ms later)",
                    ms(r.crsd_topology_later)
                )
            } else {
                String::new()
            }
        );
        created.push(r);

        // Drills.
        let hand_seed = At::local(hand.ports[0]);
        let mut d_crsd = None;
        if crsd_first {
            d_crsd = Some(
                drill(&c.addr, PASSWORD, Some(settle))
                    .await
                    .context("crsd drill")?,
            );
        }
        let d_hand = drill(&hand_seed, HAND_PASSWORD, None)
            .await
            .context("hand-run drill")?;
        let d_crsd = match d_crsd {
            Some(d) => d,
            None => drill(&c.addr, PASSWORD, Some(settle))
                .await
                .context("crsd drill")?,
        };
        print_drill(round, "crsd", &d_crsd);
        print_drill(round, "hand-run", &d_hand);
        crsd_drills.push(d_crsd);
        hand_drills.push(d_hand);
        drop(hand);
        destroy_crsd(&tc3, &c).await;
    }

    println!();
    println!("== create {SHARDS} shards x 1 replica -> running, {rounds} rounds ==");
    let cli = line(
        "redis-cli --cluster create (spawn -> ok on all 6)",
        created.iter().map(|c| c.redis_cli),
    );
    let own = line(
        "hand-rolled join (spawn -> ok on all 6)",
        created.iter().map(|c| c.hand_rolled),
    );
    let crsd = line(
        "crsd CreateInstances -> Status 2, address ok",
        created.iter().map(|c| c.crsd),
    );
    println!(
        "ratio crsd / redis-cli      p50 {:5.2} x   (target <= 1.0 x)",
        crsd.0 / cli.0
    );
    println!("ratio crsd / hand-rolled    p50 {:5.2} x", crsd.0 / own.0);

    println!();
    println!(
        "== shard failover: kill -9 of a shard's master -> every slot range writable, {rounds} drills, \
         cluster-node-timeout {timeout_ms} ms =="
    );
    let c = outage_line("crsd (running)", &crsd_drills);
    let h = outage_line("hand-run", &hand_drills);
    println!(
        "ratio crsd / hand-run       p50 {:5.2} x   max {:5.2} x   (target <= 1.1 x, crsd p50 <= 2500 ms)",
        c.0 / h.0,
        c.1 / h.1
    );
    let promoted = crsd_drills.iter().filter(|d| d.promoted).count();
    let kept = crsd_drills
        .iter()
        .filter(|d| !d.promoted && d.killed_now == "master")
        .count();
    println!(
        "crsd: the cluster failed over (replica promoted) in {promoted} of {rounds} drills; the restarted \
         node kept its slots (back before the failover) in {kept}"
    );
    Ok(())
}

/// Prints `what`'s p50 and every sample; (p50, max) in ms.
fn line(what: &str, samples: impl Iterator<Item = Duration>) -> (f64, f64) {
    let mut all: Vec<Duration> = samples.collect();
    let each: Vec<String> = all.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    all.sort();
    let p50 = ms(percentile(&all, 0.5));
    let max = ms(*all.last().unwrap_or(&Duration::ZERO));
    println!("{what:45} p50 {p50:7.1} ms   each [{}] ms", each.join(", "));
    (p50, max)
}

fn outage_line(what: &str, drills: &[Drill]) -> (f64, f64) {
    let mut all: Vec<Duration> = drills.iter().map(|d| d.outage).collect();
    let each: Vec<String> = all.iter().map(|d| format!("{:.0}", ms(*d))).collect();
    all.sort();
    let p50 = ms(percentile(&all, 0.5));
    let max = ms(*all.last().unwrap_or(&Duration::ZERO));
    println!(
        "{what:16} outage p50 {p50:7.1} ms  max {max:7.1} ms   each [{}] ms",
        each.join(", ")
    );
    (p50, max)
}

fn print_drill(round: usize, what: &str, d: &Drill) {
    let back = match d.back_after {
        // Kept its slots: writable once it declared the cluster ok again.
        Some(b) if !d.promoted => format!(
            "killed node answering again after {:.0} ms, writable {:.0} ms later",
            ms(b),
            ms(d.outage.saturating_sub(b))
        ),
        Some(b) => format!("killed node answering again after {:.0} ms", ms(b)),
        None => "killed node not back".to_string(),
    };
    let how = if d.promoted {
        "replica promoted"
    } else {
        "no failover"
    };
    println!(
        "round {round}: drill   {what:8} outage {:7.1} ms; {back}; {how}; the killed node is now {}",
        ms(d.outage),
        d.killed_now
    );
}

// ---- crsd ----

pub(crate) struct CrsdCluster {
    pub(crate) id: String,
    pub(crate) addr: At,
    nodes: Vec<At>,
}

/// CreateInstances → DescribeInstances Status 2 → `cluster_state:ok` at the address.
pub(crate) async fn create_crsd(
    tc3: &crate::tc3::Tc3Client,
    svc: &Arc<crsd_service::Service>,
    round: usize,
) -> Result<(Duration, CrsdCluster)> {
    let t0 = Instant::now();
    let r = tc3
        .call(
            "CreateInstances",
            &json!({
                "TypeId": 18, "MemSize": 1024, "GoodsNum": 1, "BillingMode": 0,
                "ZoneId": 100002, "Password": PASSWORD, "RedisShardNum": SHARDS,
                "RedisReplicasNum": 1, "InstanceName": format!("bench-cluster-{round}"),
            }),
        )
        .await?;
    let id = r["InstanceIds"][0]
        .as_str()
        .context("InstanceIds")?
        .to_string();
    let deadline = t0 + CREATE_LIMIT;
    let d = loop {
        let d = tc3
            .call("DescribeInstances", &json!({ "InstanceId": id }))
            .await?;
        let inst = d["InstanceSet"][0].clone();
        if inst["Status"] == 2 {
            break inst;
        }
        if Instant::now() > deadline {
            bail!("{id} not running after {CREATE_LIMIT:?}: {inst}");
        }
        tokio::time::sleep(POLL).await;
    };
    let addr = At {
        host: d["WanIp"].as_str().context("WanIp")?.to_string(),
        port: d["Port"].as_u64().context("Port")? as u16,
    };
    loop {
        let info = async {
            let mut c = conn(&addr, PASSWORD).await?;
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async::<String>(&mut c)
                .await
        }
        .await
        .unwrap_or_default();
        if info.contains("cluster_state:ok") {
            break;
        }
        if Instant::now() > deadline {
            bail!("{id} at {addr}: no cluster_state:ok: {info}");
        }
        tokio::time::sleep(POLL).await;
    }
    let took = t0.elapsed();
    let inst = svc.store().instance(&id).await?.context("instance")?;
    let nodes = inst
        .nodes
        .iter()
        .map(|n| At {
            host: svc.node_host(n),
            port: n.port,
        })
        .collect();
    Ok((took, CrsdCluster { id, addr, nodes }))
}

/// DestroyPostpaidInstance (crsd stops the nodes), then until none of them answers. Only
/// printed when it fails: the end of the run kills what is left.
pub(crate) async fn destroy_crsd(tc3: &crate::tc3::Tc3Client, c: &CrsdCluster) {
    if let Err(e) = tc3
        .call("DestroyPostpaidInstance", &json!({ "InstanceId": c.id }))
        .await
    {
        println!("(could not destroy {}: {e})", c.id);
        return;
    }
    let deadline = Instant::now() + SETTLE_LIMIT;
    for node in &c.nodes {
        while tokio::net::TcpStream::connect((node.host.as_str(), node.port))
            .await
            .is_ok()
        {
            if Instant::now() > deadline {
                println!("({}: {node} still answers after its destroy)", c.id);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

// ---- by hand ----

/// Ports for the hand-run nodes: each free along with its bus port, never handed out twice.
pub(crate) struct HandPorts {
    next: u16,
}

impl HandPorts {
    pub(crate) fn new() -> Result<HandPorts> {
        Ok(HandPorts { next: HAND_PORTS.0 })
    }

    pub(crate) fn take(&mut self) -> Result<u16> {
        while self.next < HAND_PORTS.1 {
            let p = self.next;
            self.next += 1;
            let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
            if free(p) && free(p + 10000) {
                return Ok(p);
            }
        }
        bail!("no free ports left in {HAND_PORTS:?} for hand-run nodes")
    }
}

/// Six redis-servers run by hand: the first three become masters; killed when dropped.
pub(crate) struct HandCluster {
    pub(crate) children: Vec<Child>,
    pub(crate) ports: Vec<u16>,
}

impl Drop for HandCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn spawn_nodes(dir: &Path, ports: &mut HandPorts, timeout_ms: u64) -> Result<HandCluster> {
    let mut nodes = HandCluster {
        children: Vec::new(),
        ports: Vec::new(),
    };
    let mut confs = Vec::new();
    for _ in 0..NODES {
        let port = ports.take()?;
        confs.push(node_conf(&dir.join(port.to_string()), port, timeout_ms)?);
        nodes.ports.push(port);
    }
    for conf in confs {
        nodes.children.push(
            Command::new("redis-server")
                .arg(conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("starting redis-server")?,
        );
    }
    Ok(nodes)
}

/// A hand-run cluster node's redis.conf (and the ACL file beside it).
pub(crate) fn node_conf(dir: &Path, port: u16, timeout_ms: u64) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let acl = dir.join("users.acl");
    std::fs::write(&acl, ACL_FILE)?;
    let conf = format!(
        "bind 127.0.0.1\nport {port}\ndaemonize no\nset-proc-title no\ndir \"{d}\"\n\
         logfile \"{d}/redis.log\"\nappendonly yes\nappendfsync everysec\nsave \"\"\n\
         maxmemory 1gb\nrepl-diskless-sync yes\nrepl-diskless-sync-delay 0\n\
         aclfile \"{}\"\nmasteruser repl\nmasterauth replpw\n\
         cluster-enabled yes\ncluster-config-file nodes.conf\ncluster-node-timeout {timeout_ms}\n\
         cluster-require-full-coverage yes\ncluster-allow-replica-migration no\n",
        acl.display(),
        d = dir.display()
    );
    let path = dir.join("redis.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// Until every node answers PING.
async fn wait_up(ports: &[u16], deadline: Instant) -> Result<()> {
    for &p in ports {
        loop {
            let pong = async {
                let mut c = conn(&At::local(p), HAND_PASSWORD).await?;
                redis::cmd("PING").query_async::<String>(&mut c).await
            }
            .await;
            if pong.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                bail!("nothing answers at {p}");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

/// Spawn → `redis-cli --cluster create` → full topology on all 6.
pub(crate) async fn create_redis_cli(
    dir: &Path,
    ports: &mut HandPorts,
    timeout_ms: u64,
) -> Result<(Duration, HandCluster)> {
    let t0 = Instant::now();
    let deadline = t0 + CREATE_LIMIT;
    let nodes = spawn_nodes(dir, ports, timeout_ms)?;
    wait_up(&nodes.ports, deadline).await?;
    let out = tokio::process::Command::new("redis-cli")
        .args([
            "--user",
            "default",
            "-a",
            HAND_PASSWORD,
            "--no-auth-warning",
        ])
        .arg("--cluster")
        .arg("create")
        .args(nodes.ports.iter().map(|p| format!("127.0.0.1:{p}")))
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .stdin(Stdio::null())
        .output()
        .await
        .context("running redis-cli")?;
    if !out.status.success() {
        bail!(
            "redis-cli --cluster create: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let all: Vec<At> = nodes.ports.iter().map(|&p| At::local(p)).collect();
    wait_formed(&all, HAND_PASSWORD, deadline).await?;
    Ok((t0.elapsed(), nodes))
}

/// Spawn → the join crsd's engine does, by the bench's own calls → full topology on all 6.
async fn create_hand_rolled(
    dir: &Path,
    ports: &mut HandPorts,
    timeout_ms: u64,
) -> Result<(Duration, HandCluster)> {
    let t0 = Instant::now();
    let deadline = t0 + CREATE_LIMIT;
    let nodes = spawn_nodes(dir, ports, timeout_ms)?;
    wait_up(&nodes.ports, deadline).await?;
    let all: Vec<At> = nodes.ports.iter().map(|&p| At::local(p)).collect();
    let mut ids = Vec::new();
    for (i, master) in all[..SHARDS].iter().enumerate() {
        let mut c = conn(master, HAND_PASSWORD).await?;
        redis::cmd("CLUSTER")
            .arg("SET-CONFIG-EPOCH")
            .arg(i + 1)
            .query_async::<()>(&mut c)
            .await?;
        let (lo, hi) = crsd_engine::even_slots(i, SHARDS);
        redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(lo)
            .arg(hi)
            .query_async::<()>(&mut c)
            .await?;
        ids.push(
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async::<String>(&mut c)
                .await?,
        );
    }
    let mut first = conn(&all[0], HAND_PASSWORD).await?;
    for node in &all[1..] {
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg(&node.host)
            .arg(node.port)
            .query_async::<()>(&mut first)
            .await?;
    }
    for (replica, master_id) in all[SHARDS..].iter().zip(&ids) {
        let mut c = conn(replica, HAND_PASSWORD).await?;
        loop {
            match redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(master_id)
                .query_async::<()>(&mut c)
                .await
            {
                Ok(()) => break,
                // "Unknown node": the meeting has not reached it yet.
                Err(e) if Instant::now() > deadline => bail!("REPLICATE on {replica}: {e}"),
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
    wait_formed(&all, HAND_PASSWORD, deadline).await?;
    Ok((t0.elapsed(), nodes))
}

// ---- the cluster's own view ----

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
struct NodeLine {
    id: String,
    myself: bool,
    master: bool,
    master_id: Option<String>,
    /// `fail`, `fail?`, `handshake` or `noaddr` in its flags.
    troubled: bool,
    connected: bool,
    slots: u32,
}

fn parse_nodes(text: &str) -> Vec<NodeLine> {
    let mut out = Vec::new();
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        let slots = f[8..]
            .iter()
            .filter(|s| !s.starts_with('['))
            .map(|s| match s.split_once('-') {
                Some((lo, hi)) => {
                    hi.parse::<u32>().unwrap_or(0) + 1 - lo.parse::<u32>().unwrap_or(0)
                }
                None => 1,
            })
            .sum();
        out.push(NodeLine {
            id: f[0].to_string(),
            myself: flags.contains(&"myself"),
            master: flags.contains(&"master"),
            master_id: (f[3] != "-").then(|| f[3].to_string()),
            troubled: flags
                .iter()
                .any(|fl| ["fail", "fail?", "handshake", "noaddr"].contains(fl)),
            connected: f[7] == "connected",
            slots,
        });
    }
    out
}

async fn cluster_nodes(at: &At, password: &str) -> redis::RedisResult<Vec<NodeLine>> {
    let mut c = conn(at, password).await?;
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await?;
    Ok(parse_nodes(&text))
}

/// Whether the node at `at` says `cluster_state:ok` and shows the full topology: 6 nodes, 3
/// masters serving the 16384 slots, 3 replicas each following one of them, nothing failing
/// or in handshake; a replica's own link to its master up.
async fn formed(at: &At, password: &str) -> redis::RedisResult<bool> {
    let mut c = conn(at, password).await?;
    let info: String = redis::cmd("CLUSTER")
        .arg("INFO")
        .query_async(&mut c)
        .await?;
    if !info.contains("cluster_state:ok") {
        return Ok(false);
    }
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut c)
        .await?;
    let view = parse_nodes(&text);
    let masters: Vec<&NodeLine> = view.iter().filter(|n| n.master && n.slots > 0).collect();
    let covered: u32 = masters.iter().map(|n| n.slots).sum();
    let replicas = view
        .iter()
        .filter(|n| {
            !n.master
                && n.master_id
                    .as_ref()
                    .is_some_and(|m| masters.iter().any(|x| &x.id == m))
        })
        .count();
    if view.len() != NODES
        || masters.len() != SHARDS
        || covered != u32::from(crsd_engine::SLOTS)
        || replicas != NODES - SHARDS
        || view.iter().any(|n| n.troubled)
    {
        return Ok(false);
    }
    if view.iter().any(|n| n.myself && !n.master) {
        let repl: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await?;
        return Ok(repl.contains("master_link_status:up"));
    }
    Ok(true)
}

/// Until every node in `nodes` is [`formed`].
async fn wait_formed(nodes: &[At], password: &str, deadline: Instant) -> Result<()> {
    let mut left: Vec<&At> = nodes.iter().collect();
    while !left.is_empty() {
        let mut still = Vec::new();
        for at in left {
            if !formed(at, password).await.unwrap_or(false) {
                still.push(at);
            }
        }
        left = still;
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("not formed on {left:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// `CLUSTER SLOTS`: (first slot, last slot, master) of every range, and every node listed.
pub(crate) async fn slot_map(
    con: &mut MultiplexedConnection,
) -> redis::RedisResult<(Vec<(u16, u16, At)>, Vec<At>)> {
    let v: Vec<redis::Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(con).await?;
    let int = |v: &redis::Value| match v {
        redis::Value::Int(i) => Some(*i),
        _ => None,
    };
    let node = |v: &redis::Value| match v {
        redis::Value::Array(n) if n.len() >= 2 => {
            let host = match &n[0] {
                redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                redis::Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            Some(At {
                host,
                port: int(&n[1])? as u16,
            })
        }
        _ => None,
    };
    let mut map = Vec::new();
    let mut all = Vec::new();
    for range in &v {
        let redis::Value::Array(items) = range else {
            continue;
        };
        if items.len() < 3 {
            continue;
        }
        let (Some(lo), Some(hi), Some(master)) = (int(&items[0]), int(&items[1]), node(&items[2]))
        else {
            continue;
        };
        all.extend(items[2..].iter().filter_map(node));
        map.push((lo as u16, hi as u16, master));
    }
    map.sort_by_key(|r| r.0);
    Ok((map, all))
}

pub(crate) fn master_of(map: &[(u16, u16, At)], slot: u16) -> Option<&At> {
    map.iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .map(|(_, _, m)| m)
}

// ---- drills ----

/// One drill on the cluster `seed` leads to (see the module docs). With `comes_back` the
/// killed node is expected to be started again (crsd's supervisor) within that time, and the
/// drill waits for it to rejoin before it reads the roles.
async fn drill(seed: &At, password: &str, comes_back: Option<Duration>) -> Result<Drill> {
    let (map, _) = slot_map(&mut conn(seed, password).await?).await?;
    let victim = master_of(&map, VICTIM_SLOT)
        .context("no master for the victim's slot")?
        .clone();
    let survivor = master_of(&map, 0).context("no master for slot 0")?.clone();
    let view = cluster_nodes(&victim, password).await?;
    let victim_id = view
        .iter()
        .find(|n| n.myself)
        .context("CLUSTER NODES lists no myself")?
        .id
        .clone();
    let replica_id = view
        .iter()
        .find(|n| n.master_id.as_deref() == Some(victim_id.as_str()))
        .context("the victim has no replica")?
        .id
        .clone();
    let pid = node_pid(&victim, password).await?;

    let started = Instant::now();
    let prober = Prober::start(seed.clone(), password.to_string());
    let deadline = started + Duration::from_secs(10);
    while prober.ok_after(started).is_none() {
        if Instant::now() > deadline {
            prober.stop().await;
            bail!("the prober never wrote every range at {seed}");
        }
        tokio::time::sleep(POLL).await;
    }
    tokio::time::sleep(BEFORE_KILL).await;

    let killed_at = Instant::now();
    // SAFETY: kill(2) on the pid the node reported itself (checked to be a redis-server).
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let watch = tokio::spawn(wait_answering(
        victim.clone(),
        password.to_string(),
        killed_at + comes_back.unwrap_or(OUTAGE_LIMIT),
    ));
    let deadline = killed_at + OUTAGE_LIMIT;
    let outage = loop {
        if let Some(done) = prober.ok_after(killed_at) {
            break done - killed_at;
        }
        if Instant::now() > deadline {
            prober.stop().await;
            watch.abort();
            bail!("slots at {seed} not all writable within {OUTAGE_LIMIT:?} of the kill");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    prober.stop().await;

    // The settled cluster, as the first shard's master sees it.
    let deadline = Instant::now() + comes_back.unwrap_or(SETTLE_LIMIT);
    let view = loop {
        let view = cluster_nodes(&survivor, password).await.unwrap_or_default();
        let shard_master = view
            .iter()
            .find(|n| n.master && n.slots > 0 && (n.id == victim_id || n.id == replica_id));
        let settled = match shard_master {
            None => false,
            // Back and rejoined, whatever its role.
            Some(_) if comes_back.is_some() => {
                view.len() == NODES
                    && view.iter().all(|n| n.connected && !n.troubled)
                    && view.iter().filter(|n| n.master && n.slots > 0).count() == SHARDS
            }
            // The replica promoted.
            Some(m) => m.id == replica_id,
        };
        if settled {
            break view;
        }
        if Instant::now() > deadline {
            watch.abort();
            bail!("the cluster at {survivor} did not settle: {view:?}");
        }
        tokio::time::sleep(POLL * 5).await;
    };
    let back_at = if comes_back.is_some() {
        watch.await.ok().flatten()
    } else {
        watch.abort();
        None
    };
    let promoted = view.iter().any(|n| n.id == replica_id && n.master);
    let killed = view.iter().find(|n| n.id == victim_id);
    let killed_now = match killed {
        Some(n) if n.troubled || !n.connected => "down",
        Some(n) if n.master && n.slots > 0 => "master",
        Some(n) if n.master_id.as_deref() == Some(replica_id.as_str()) => {
            "a replica of its replica"
        }
        Some(_) => "something else",
        None => "forgotten",
    };
    Ok(Drill {
        outage,
        back_after: back_at.map(|t| t - killed_at),
        promoted,
        killed_now,
    })
}

/// The pid of the redis-server at `at` (`INFO server`), checked to be a redis-server.
async fn node_pid(at: &At, password: &str) -> Result<u32> {
    let mut c = conn(at, password).await?;
    let info: String = redis::cmd("INFO").arg("server").query_async(&mut c).await?;
    let pid: u32 = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .context("process_id")?
        .trim()
        .parse()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmd).contains("redis-server") {
        bail!("{at}: pid {pid} is not a redis-server here");
    }
    Ok(pid)
}

/// When something at `at` first answers PING (any reply) again, before `deadline`.
async fn wait_answering(at: At, password: String, deadline: Instant) -> Option<Instant> {
    while Instant::now() < deadline {
        let pong = async {
            let mut c = conn(&at, &password).await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        }
        .await;
        // An error reply (LOADING) is an answer too: the process is back.
        if pong.is_ok() || pong.is_err_and(|e| e.kind() != redis::ErrorKind::IoError) {
            return Some(Instant::now());
        }
        tokio::time::sleep(POLL).await;
    }
    None
}

fn url(at: &At, password: &str) -> String {
    format!("redis://default:{password}@{at}/")
}

fn timeouts() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_connection_timeout(CLIENT_TIMEOUT)
        .set_response_timeout(CLIENT_TIMEOUT)
}

/// A connection with the prober's timeouts, logged in as `default`.
async fn conn(at: &At, password: &str) -> redis::RedisResult<MultiplexedConnection> {
    redis::Client::open(url(at, password))?
        .get_multiplexed_async_connection_with_config(&timeouts())
        .await
}

/// Redis Cluster's key hash (CRC16/XMODEM).
pub(crate) fn crc16(data: &[u8]) -> u16 {
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

/// A key in each of the three even slot ranges (the victim's slot for the second).
fn probe_keys() -> Vec<(String, u16)> {
    (0..SHARDS)
        .map(|i| {
            let (lo, hi) = crsd_engine::even_slots(i, SHARDS);
            let want = if (lo..=hi).contains(&VICTIM_SLOT) {
                VICTIM_SLOT
            } else {
                lo + (hi - lo) / 2
            };
            let key = (0u32..)
                .map(|n| format!("probe{n}"))
                .find(|k| crc16(k.as_bytes()) % crsd_engine::SLOTS == want)
                .expect("some key hashes to every slot");
            (key, want)
        })
        .collect()
}

/// One round of the prober: sent, answered, and whether every range accepted its write.
#[derive(Clone, Copy)]
struct Round {
    sent: Instant,
    done: Instant,
    ok: bool,
}

/// The drill's slot-aware client (see the module docs).
struct Prober {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Round>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Prober {
    fn start(seed: At, password: String) -> Prober {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), rounds.clone());
        let task = tokio::spawn(async move { probe(seed, password, s, r).await });
        Prober { stop, rounds, task }
    }

    /// When the first round sent after `t` in which every range accepted its write ended.
    fn ok_after(&self, t: Instant) -> Option<Instant> {
        let rounds = self.rounds.lock().unwrap();
        rounds.iter().find(|r| r.sent > t && r.ok).map(|r| r.done)
    }

    async fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
    }
}

async fn probe(seed: At, password: String, stop: Arc<AtomicBool>, rounds: Arc<Mutex<Vec<Round>>>) {
    let keys = probe_keys();
    let mut conns: HashMap<At, MultiplexedConnection> = HashMap::new();
    let mut map: Vec<(u16, u16, At)> = Vec::new();
    let mut known: Vec<At> = Vec::new();
    let mut stale = true;
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if stale {
            // The seed first (as a client bootstraps), then every node seen so far.
            let mut asked = vec![seed.clone()];
            asked.extend(known.iter().filter(|k| **k != seed).cloned());
            for at in asked {
                let Some(c) = connection(&mut conns, &at, &password).await else {
                    continue;
                };
                match slot_map(c).await {
                    Ok((m, nodes)) if !m.is_empty() => {
                        map = m;
                        for node in nodes {
                            if !known.contains(&node) {
                                known.push(node);
                            }
                        }
                        stale = false;
                        break;
                    }
                    _ => {
                        conns.remove(&at);
                    }
                }
            }
        }
        let sent = Instant::now();
        let mut ok = !map.is_empty();
        for (key, slot) in &keys {
            n += 1;
            let Some(master) = master_of(&map, *slot).cloned() else {
                ok = false;
                stale = true;
                continue;
            };
            let Err(e) = set(&mut conns, &master, &password, key, n).await else {
                continue;
            };
            stale = true;
            // A MOVED is followed once, as a cluster client does.
            let moved = e.redirect_node().and_then(|(to, _)| {
                let (host, port) = to.rsplit_once(':')?;
                Some(At {
                    host: host.to_string(),
                    port: port.parse().ok()?,
                })
            });
            let followed = match moved {
                Some(to) => set(&mut conns, &to, &password, key, n).await.is_ok(),
                None => false,
            };
            ok &= followed;
        }
        rounds.lock().unwrap().push(Round {
            sent,
            done: Instant::now(),
            ok,
        });
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// The cached connection to `at`, or a new one; `None` when it cannot connect.
async fn connection<'a>(
    conns: &'a mut HashMap<At, MultiplexedConnection>,
    at: &At,
    password: &str,
) -> Option<&'a mut MultiplexedConnection> {
    if !conns.contains_key(at) {
        let c = conn(at, password).await.ok()?;
        conns.insert(at.clone(), c);
    }
    conns.get_mut(at)
}

/// `SET key n` at `at`; after any error its connection is dropped.
async fn set(
    conns: &mut HashMap<At, MultiplexedConnection>,
    at: &At,
    password: &str,
    key: &str,
    n: u64,
) -> redis::RedisResult<()> {
    let Some(c) = connection(conns, at, password).await else {
        return Err(redis::RedisError::from((
            redis::ErrorKind::IoError,
            "cannot connect",
        )));
    };
    let r = redis::cmd("SET").arg(key).arg(n).query_async::<()>(c).await;
    if r.is_err() {
        conns.remove(at);
    }
    r
}
