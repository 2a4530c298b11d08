//! `BENCH_SUITE=failover` (`make bench-failover`): automatic failover behind a stable address,
//! next to the same Sentinel + HAProxy stack set up by hand, in one run on this machine.
//!
//! A drill: a client writes `RPUSH log <n>` every 5 ms to the stable address (300 ms connect
//! and reply timeouts, no retries, a new connection after any error) and sends `WAIT 1 100`
//! after each OK; a write counts as acknowledged when a replica has it, which is all a
//! failover to a replica can promise. 500 ms in, the master's redis-server is killed with
//! SIGKILL. The outage is the time from the kill to the first RPUSH answered OK; 500 ms after
//! that the client stops and every acknowledged write must be in the list.
//!
//! BENCH_DRILLS (10) drills, each on its own instance, in three settings:
//!
//! 1. crsd up: instances made by crsd (master + 1 replica), its Sentinels and proxy, crsd
//!    running (its supervisor records the failover and restarts the old master as a replica
//!    meanwhile). Interleaved with setting 3, so both see the same machine.
//! 2. crsd down: the same with crsd stopped first (its nodes, Sentinels and proxy keep
//!    running: failover must not need crsd); crsd is then started again and must record what
//!    Sentinel did (DescribeInstanceZoneInfo names the promoted node master).
//! 3. hand-run: raw redis-server pairs, three redis-sentinel processes and one haproxy set up
//!    as the reference recipe does (ACL users for replication, Sentinel and the check; the
//!    QUIT-pipelined `role:master` check), with crsd's down-after, failover-timeout and check
//!    interval, so the ratio shows what crsd adds, not what different settings give.
//!
//! Then the stable address's cost: `redis-benchmark` SET/GET, 50 clients, pipeline 1 and 16,
//! through a crsd instance's address and straight to its master's port, alternated.
//!
//! Sentinel's `+switch-master` lines are counted per instance: more than one for a drill is a
//! second failover (a new master deemed down right after its promotion). BENCH_DOWN_AFTER
//! sets `ha.down_after_ms` (both stacks) to compare settings.

use crate::{ms, Client};
use anyhow::{bail, Context, Result};
use crsd::config::Config;
use crsd_core::clock::SystemClock;
use serde_json::json;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Bench2024(x";
const WRITE_EVERY: Duration = Duration::from_millis(5);
const CLIENT_TIMEOUT: Duration = Duration::from_millis(300);
const WAIT_MS: u64 = 100;
const BEFORE_KILL: Duration = Duration::from_millis(500);
const AFTER_RESUME: Duration = Duration::from_millis(500);
/// A drill whose writes do not resume within this fails the benchmark.
const OUTAGE_LIMIT: Duration = Duration::from_secs(30);
const READY_LIMIT: Duration = Duration::from_secs(60);
/// Rounds of the address cost (BENCH_ROUNDS overrides).
const BENCH_ROUNDS: usize = 3;

// The hand-run stack's ACL users (the reference recipe's rules).
const HAND_PASSWORD: &str = "userpw";
const ACL_FILE: &str = "\
user default on >userpw ~* &* +@all
user repl on >replpw resetchannels -@all +psync +replconf +ping
user sentinel on >sentpw allchannels -@all +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill
user hc on >hcpw resetchannels -@all +ping +info +quit
";

pub async fn run(dir: &Path) -> Result<()> {
    let drills = crate::env_usize("BENCH_DRILLS", 10).max(1);
    let mut cfg = crate::bench_config(dir, 19000)?;
    cfg.instances.port_max = 19000 + 3 * (2 * drills as u16 + 1) + 50;
    let mut ports = HashSet::new();
    while ports.len() < 3 {
        ports.insert(crate::free_port()?);
    }
    cfg.ha.sentinel_ports = ports.into_iter().collect();
    if std::env::var_os("BENCH_POOL").is_some() {
        // Addresses of their own: no proxy between the client and the master.
        cfg.instances.address_pool = vec![format!(
            "127.{}.{}.0/24",
            64 + std::process::id() % 64,
            std::process::id() % 250
        )];
    }
    if let Some(d) = std::env::var("BENCH_DOWN_AFTER")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.ha.down_after_ms = d;
    }
    for z in &mut cfg.catalog.zones {
        for t in &mut z.types {
            t.max_buy_num = 50;
        }
    }
    println!(
        "crsd-bench failover: {drills} drills per setting; down_after_ms {}, failover_timeout_ms {}, \
         check inter {} ms (fastinter/downinter 100 ms, fall 3, rise 1), quorum {} of {} sentinels",
        cfg.ha.down_after_ms,
        cfg.ha.failover_timeout_ms,
        cfg.ha.check_interval_ms,
        cfg.ha.quorum,
        cfg.ha.sentinel_ports.len()
    );
    println!(
        "writer: RPUSH every {} ms, {} ms connect/reply timeouts, no retries; acknowledged = WAIT 1 {WAIT_MS} >= 1",
        WRITE_EVERY.as_millis(),
        CLIENT_TIMEOUT.as_millis()
    );

    let mut server = None;
    let mut hand = HandRun::default();
    let result = measure(&cfg, dir, drills, &mut server, &mut hand).await;
    if let Some(r) = server.take() {
        r.shutdown(Duration::from_secs(5)).await;
    }
    hand.stop();
    // crsd's nodes by their pid files (and their cgroups), then whatever else is left.
    crate::kill_all(&cfg);
    kill_under(dir);
    result
}

/// An address clients connect to.
#[derive(Clone, Debug)]
struct At {
    host: String,
    port: u16,
}

impl At {
    fn local(port: u16) -> At {
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

/// One crsd instance: its id, its address, and its nodes' (by sequence number).
struct Instance {
    id: String,
    addr: At,
    nodes: Vec<At>,
}

/// What one drill saw.
struct Drill {
    outage: Duration,
    acked: usize,
    lost: Vec<u64>,
}

async fn measure(
    cfg: &Config,
    dir: &Path,
    drills: usize,
    server: &mut Option<crsd::server::Running>,
    hand: &mut HandRun,
) -> Result<()> {
    let data = cfg.data_dir.clone();
    let (running, client) = crate::start_crsd(cfg).await?;
    let svc = running.service.clone();
    *server = Some(running);

    let t0 = Instant::now();
    let ids = create_instances(&client, 2 * drills + 1).await?;
    let mut instances = Vec::new();
    for id in ids {
        let inst = svc.store().instance(&id).await?.context("instance")?;
        let mut nodes: Vec<_> = inst
            .nodes
            .iter()
            .map(|n| (n.seq, svc.node_host(n), n.port))
            .collect();
        nodes.sort();
        instances.push(Instance {
            id,
            // The `WanIp` and `Port` DescribeInstances shows.
            addr: At {
                host: inst.vip.clone(),
                port: inst.port(),
            },
            nodes: nodes
                .into_iter()
                .map(|(_, host, port)| At { host, port })
                .collect(),
        });
    }
    let secret = hex::encode(std::fs::read(data.join("sentinel.secret"))?);
    for inst in &instances {
        wait_watched(&cfg.ha.sentinel_ports, Some(&secret), &inst.id).await?;
    }
    println!(
        "crsd: {} instances created and watched by its sentinels in {:.1} s",
        instances.len(),
        t0.elapsed().as_secs_f64()
    );

    let t0 = Instant::now();
    hand.start(cfg, &dir.join("hand"), drills).await?;
    println!(
        "hand-run: {drills} pairs, 3 sentinels, haproxy ready in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // 1 and 3, interleaved.
    let (up_set, rest) = instances.split_at(drills);
    let (down_set, bench_inst) = rest.split_at(drills);
    let bench_inst = &bench_inst[0];
    let mut up = Vec::new();
    let mut handrun = Vec::new();
    for (i, inst) in up_set.iter().enumerate() {
        let pid = node_pid(&data, &inst.id, 0).context("the master runs")?;
        let d = drill(&inst.addr, PASSWORD, pid).await?;
        print_drill(i, "crsd up", &d);
        up.push(d);
        let pair = &hand.pairs[i];
        let d = drill(&At::local(pair.addr), HAND_PASSWORD, pair.master_pid).await?;
        print_drill(i, "hand-run", &d);
        handrun.push(d);
    }
    let t0 = Instant::now();
    let tc3 = client.tc3();
    for inst in up_set {
        wait_recorded(&tc3, &inst.id, 1).await?;
    }
    println!(
        "crsd up: every instance recorded with node 1 master, both nodes online, {:.1} s after the last drill",
        t0.elapsed().as_secs_f64()
    );

    // 2: crsd stopped, then started again.
    if let Some(r) = server.take() {
        r.shutdown(Duration::from_secs(5)).await;
    }
    let mut down = Vec::new();
    for (i, inst) in down_set.iter().enumerate() {
        let pid = node_pid(&data, &inst.id, 0).context("the master runs")?;
        let d = drill(&inst.addr, PASSWORD, pid).await?;
        print_drill(i, "crsd down", &d);
        down.push(d);
    }
    let t0 = Instant::now();
    let running = crsd::server::start(cfg.clone(), Arc::new(SystemClock)).await?;
    let client = Client::new(
        running.addr.to_string(),
        client.secret_id.clone(),
        client.secret_key.clone(),
    );
    *server = Some(running);
    let tc3 = client.tc3();
    for inst in down_set {
        wait_recorded(&tc3, &inst.id, 1).await?;
    }
    let restarted = t0.elapsed();

    // Second failovers, from the sentinels' logs.
    let crsd_logs: Vec<PathBuf> = cfg
        .ha
        .sentinel_ports
        .iter()
        .map(|p| {
            data.join("sentinel")
                .join(p.to_string())
                .join("sentinel.log")
        })
        .collect();
    // What the sentinels logged about a drill slower than 1.5 s (a failover attempt that
    // Sentinel aborted and retried shows here).
    for (set, drills, what) in [(up_set, &up, "crsd up"), (down_set, &down, "crsd down")] {
        for (inst, d) in set.iter().zip(drills.iter()) {
            if d.outage > Duration::from_millis(1500) {
                println!(
                    "{what} {}: outage {:.0} ms; its sentinels' log:",
                    inst.id,
                    ms(d.outage)
                );
                for log in &crsd_logs {
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    for line in text.lines().filter(|l| l.contains(&inst.id)) {
                        println!(
                            "  {}: {line}",
                            log.parent()
                                .and_then(|p| p.file_name())
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default()
                        );
                    }
                }
            }
        }
    }
    let up_odd = odd_switches(&crsd_logs, up_set.iter().map(|i| i.id.as_str()));
    let down_odd = odd_switches(&crsd_logs, down_set.iter().map(|i| i.id.as_str()));
    let hand_odd = odd_switches(&hand.logs(), hand.pairs.iter().map(|p| p.name.as_str()));

    println!();
    println!("== unplanned failover: kill -9 of the master -> first write answered OK at the stable address, {drills} drills ==");
    let up_s = summary("crsd up", &up, &up_odd);
    let down_s = summary("crsd down", &down, &down_odd);
    let hand_s = summary("hand-run stack", &handrun, &hand_odd);
    println!(
        "ratio crsd up / hand-run        p50 {:5.2} x   max {:5.2} x   (target <= 1.1 x)",
        up_s.0 / hand_s.0,
        up_s.1 / hand_s.1
    );
    println!(
        "ratio crsd down / hand-run      p50 {:5.2} x   max {:5.2} x",
        down_s.0 / hand_s.0,
        down_s.1 / hand_s.1
    );
    println!(
        "crsd restarted after the crsd-down drills: its records name the promoted node master for all {drills} instances {:.1} s after start",
        restarted.as_secs_f64()
    );

    println!();
    address_cost(bench_inst).await?;
    let lost: usize = [&up, &down, &handrun]
        .iter()
        .flat_map(|s| s.iter())
        .map(|d| d.lost.len())
        .sum();
    if lost > 0 {
        bail!("{lost} acknowledged writes lost");
    }
    Ok(())
}

fn print_drill(i: usize, what: &str, d: &Drill) {
    let mut line = format!(
        "drill {i:2} {what:9}: outage {:7.1} ms, {} acknowledged, {} lost",
        ms(d.outage),
        d.acked,
        d.lost.len()
    );
    if !d.lost.is_empty() {
        let _ = write!(line, " {:?}", &d.lost[..d.lost.len().min(50)]);
    }
    println!("{line}");
}

/// Prints one setting's line; its p50 and max in ms.
fn summary(what: &str, drills: &[Drill], odd_switches: &[String]) -> (f64, f64) {
    let mut outages: Vec<Duration> = drills.iter().map(|d| d.outage).collect();
    outages.sort();
    let p50 = ms(crate::percentile(&outages, 0.5));
    let max = ms(*outages.last().unwrap_or(&Duration::ZERO));
    let acked: usize = drills.iter().map(|d| d.acked).sum();
    let lost: usize = drills.iter().map(|d| d.lost.len()).sum();
    let failovers = if odd_switches.is_empty() {
        "one failover per drill".to_string()
    } else {
        format!(
            "{} drills with other than one failover (+switch-master counts {})",
            odd_switches.len(),
            odd_switches.join(",")
        )
    };
    println!(
        "{what:16} outage p50 {p50:7.1} ms  max {max:7.1} ms   acknowledged {acked}, lost {lost}; {failovers}"
    );
    (p50, max)
}

/// One drill against the stable address `port` (see the module docs); `master_pid` is killed.
async fn drill(at: &At, password: &str, master_pid: u32) -> Result<Drill> {
    let w = Writer::start(at.clone(), password.to_string());
    tokio::time::sleep(BEFORE_KILL).await;
    let killed_at = Instant::now();
    // SAFETY: kill(2) on a pid read from the node's pid file (checked to be a redis-server)
    // or of a child this process spawned.
    unsafe { libc::kill(master_pid as i32, libc::SIGKILL) };
    let deadline = killed_at + OUTAGE_LIMIT;
    let outage = loop {
        if let Some(d) = w.first_ok_after(killed_at) {
            break d;
        }
        if Instant::now() > deadline {
            w.stop().await;
            bail!("no write answered at {at} within {OUTAGE_LIMIT:?} of the kill");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    tokio::time::sleep(AFTER_RESUME).await;
    let acked = w.stop().await;
    if acked.is_empty() {
        bail!("no write acknowledged at {at}");
    }
    let lost = lost_writes(at, password, &acked).await?;
    Ok(Drill {
        outage,
        acked: acked.len(),
        lost,
    })
}

fn url(at: &At, password: &str) -> String {
    format!("redis://default:{password}@{at}/")
}

/// A connection that gives up as the drill's client does.
async fn conn(at: &At, password: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(CLIENT_TIMEOUT)
        .set_response_timeout(CLIENT_TIMEOUT);
    redis::Client::open(url(at, password))?
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// The drill's client: what it wrote that a replica acknowledged, and when writes were
/// answered OK.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    /// (sent, answered OK) of every write answered OK.
    ok_at: Arc<Mutex<Vec<(Instant, Instant)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(at: At, password: String) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let ok_at = Arc::new(Mutex::new(Vec::new()));
        let (s, a, o) = (stop.clone(), acked.clone(), ok_at.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut c = None;
            while !s.load(Ordering::SeqCst) {
                if c.is_none() {
                    c = conn(&at, &password).await.ok();
                }
                if let Some(con) = c.as_mut() {
                    n += 1;
                    let sent = Instant::now();
                    let pushed: redis::RedisResult<i64> =
                        redis::cmd("RPUSH").arg("log").arg(n).query_async(con).await;
                    match pushed {
                        Ok(_) => {
                            o.lock().unwrap().push((sent, Instant::now()));
                            let waited: redis::RedisResult<i64> = redis::cmd("WAIT")
                                .arg(1)
                                .arg(WAIT_MS)
                                .query_async(con)
                                .await;
                            match waited {
                                Ok(r) if r >= 1 => a.lock().unwrap().push(n),
                                Ok(_) => {}
                                Err(_) => c = None,
                            }
                        }
                        Err(_) => c = None,
                    }
                }
                tokio::time::sleep(WRITE_EVERY).await;
            }
        });
        Writer {
            stop,
            acked,
            ok_at,
            task,
        }
    }

    /// How long after `t` the first write sent after `t` was answered OK.
    fn first_ok_after(&self, t: Instant) -> Option<Duration> {
        // A write sent before `t` may be answered just after it, by the master about to die.
        let ok_at = self.ok_at.lock().unwrap();
        ok_at
            .iter()
            .find(|(sent, _)| *sent > t)
            .map(|(_, at)| *at - t)
    }

    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// The acknowledged writes missing from the list at the stable address.
async fn lost_writes(at: &At, password: &str, acked: &[u64]) -> Result<Vec<u64>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let have: Vec<u64> = loop {
        let got = async {
            let mut c = conn(at, password).await?;
            redis::cmd("LRANGE")
                .arg("log")
                .arg(0)
                .arg(-1)
                .query_async(&mut c)
                .await
        }
        .await;
        match got {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => bail!("reading the list at {at}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let have: HashSet<u64> = have.into_iter().collect();
    Ok(acked
        .iter()
        .copied()
        .filter(|n| !have.contains(n))
        .collect())
}

/// CreateRedis (master + 1 replica) for `n` instances, 10 per deal; their ids once running.
async fn create_instances(client: &Client, n: usize) -> Result<Vec<String>> {
    let mut deals = Vec::new();
    let mut asked = 0;
    while asked < n {
        let k = (n - asked).min(10);
        let v = client
            .call(
                "CreateRedis",
                &[
                    ("zoneId", "100002"),
                    ("typeId", "2"),
                    ("memSize", "1024"),
                    ("goodsNum", &k.to_string()),
                    ("period", "1"),
                    ("password", PASSWORD),
                ],
            )
            .await?;
        deals.push(v["data"]["dealId"].as_str().context("dealId")?.to_string());
        asked += k;
    }
    let mut ids = Vec::new();
    for deal in deals {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            let d = client
                .call("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
                .await?;
            match d["dealDetails"][0]["status"].as_i64() {
                Some(4) => {
                    let got = d["dealDetails"][0]["goodsDetail"]["redisIds"]
                        .as_array()
                        .context("redisIds")?;
                    ids.extend(got.iter().filter_map(|v| v.as_str().map(String::from)));
                    break;
                }
                Some(5) => bail!("deal failed: {d}"),
                _ if Instant::now() > deadline => bail!("deal {deal} not delivered"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    if ids.len() != n {
        bail!("asked for {n} instances, got {}", ids.len());
    }
    Ok(ids)
}

/// The node's redis-server pid (`<data>/instances/<id>/<id>-<seq>/redis.pid`), if it runs.
fn node_pid(data: &Path, id: &str, seq: u32) -> Option<u32> {
    let path = data
        .join("instances")
        .join(id)
        .join(format!("{id}-{seq}"))
        .join("redis.pid");
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmd)
        .contains("redis-server")
        .then_some(pid)
}

/// Waits until every sentinel on `ports` watches `name` and knows the two others for it
/// (they find each other through the master's hello channel, every 2 s). Before that a
/// killed master would not be failed over by a quorum.
async fn wait_watched(ports: &[u16], password: Option<&str>, name: &str) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    'again: loop {
        if Instant::now() > deadline {
            bail!("the sentinels did not find each other for {name}");
        }
        for port in ports {
            let url = match password {
                Some(p) => format!("redis://:{p}@127.0.0.1:{port}/"),
                None => format!("redis://127.0.0.1:{port}/"),
            };
            let others = async {
                let mut c = redis::Client::open(url)?
                    .get_multiplexed_async_connection()
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("SENTINELS")
                    .arg(name)
                    .query_async::<Vec<redis::Value>>(&mut c)
                    .await
            }
            .await;
            if others.map(|o| o.len()).unwrap_or(0) < ports.len() - 1 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue 'again;
            }
        }
        return Ok(());
    }
}

/// Waits until DescribeInstanceZoneInfo names node `master` master and every node online.
async fn wait_recorded(tc3: &crate::tc3::Tc3Client, id: &str, master: i64) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let r = tc3
            .call("DescribeInstanceZoneInfo", &json!({ "InstanceId": id }))
            .await?;
        let groups = r["ReplicaGroups"].as_array().cloned().unwrap_or_default();
        let matched = !groups.is_empty()
            && groups.iter().all(|g| {
                (g["Role"] == "master") == (g["GroupId"].as_i64() == Some(master))
                    && g["RedisNodes"][0]["Status"] == "online"
            });
        if matched {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{id}: crsd's records do not name node {master} master: {groups:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `+switch-master` counts (see [`switch_count`]) of the names failed over other than
/// once.
fn odd_switches<'a>(logs: &[PathBuf], names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .map(|n| switch_count(logs, n))
        .filter(|&c| c != 1)
        .map(|c| c.to_string())
        .collect()
}

/// How many `+switch-master <name>` lines the sentinel that saw most of them logged.
fn switch_count(logs: &[PathBuf], name: &str) -> usize {
    let needle = format!("+switch-master {name} ");
    logs.iter()
        .map(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .lines()
                .filter(|line| line.contains(&needle))
                .count()
        })
        .max()
        .unwrap_or(0)
}

/// The reference stack, without crsd: per drill a master + replica pair behind its own
/// haproxy `listen` section, watched by three sentinels.
#[derive(Default)]
struct HandRun {
    children: Vec<Child>,
    /// Ports handed out so far: a port just freed can come back from the kernel.
    ports: HashSet<u16>,
    pairs: Vec<Pair>,
    sentinel_dirs: Vec<PathBuf>,
}

struct Pair {
    name: String,
    addr: u16,
    master_pid: u32,
}

impl HandRun {
    async fn start(&mut self, cfg: &Config, dir: &Path, pairs: usize) -> Result<()> {
        let redis = &cfg.instances.redis_server;
        let mut nodes = Vec::new();
        for i in 0..pairs {
            let (m, r, addr) = (self.port()?, self.port()?, self.port()?);
            let base = dir.join(format!("hp{i}"));
            let master = self.spawn(redis, &node_conf(&base.join("m"), m, None)?)?;
            self.spawn(redis, &node_conf(&base.join("r"), r, Some(m))?)?;
            self.pairs.push(Pair {
                name: format!("hp{i}"),
                addr,
                master_pid: master,
            });
            nodes.push((m, r));
        }
        for &(m, r) in &nodes {
            wait_answers(m).await?;
            wait_answers(r).await?;
            wait_synced(r).await?;
        }

        let mut monitors = String::new();
        for (p, &(m, _)) in self.pairs.iter().zip(&nodes) {
            let n = &p.name;
            let _ = write!(
                monitors,
                "sentinel monitor {n} 127.0.0.1 {m} {}\n\
                 sentinel auth-user {n} sentinel\n\
                 sentinel auth-pass {n} sentpw\n\
                 sentinel down-after-milliseconds {n} {}\n\
                 sentinel failover-timeout {n} {}\n\
                 sentinel parallel-syncs {n} 1\n",
                cfg.ha.quorum, cfg.ha.down_after_ms, cfg.ha.failover_timeout_ms
            );
        }
        let mut sentinel_ports = Vec::new();
        for s in 0..3 {
            let port = self.port()?;
            let sdir = dir.join(format!("sentinel-{s}"));
            std::fs::create_dir_all(&sdir)?;
            let conf = sdir.join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndaemonize no\nset-proc-title no\ndir \"{d}\"\n\
                     logfile \"{d}/sentinel.log\"\nsentinel resolve-hostnames no\n{monitors}",
                    d = sdir.display()
                ),
            )?;
            let program = &cfg.ha.redis_sentinel;
            self.spawn(program, &conf)?;
            self.sentinel_dirs.push(sdir);
            sentinel_ports.push(port);
        }

        // crsd's proxy timeouts and check settings, with the reference recipe's config.
        let proxy = crsd_engine::ProxyConfig::default();
        let mut hc = format!(
            "global\n    maxconn 4096\n\ndefaults\n    mode tcp\n    timeout connect {}ms\n    \
             timeout client 1h\n    timeout server 1h\n    timeout check {}ms\n    \
             default-server inter {}ms fastinter 100ms downinter 100ms fall 3 rise 1 on-marked-down shutdown-sessions\n",
            proxy.timeout_connect_ms, proxy.timeout_check_ms, cfg.ha.check_interval_ms
        );
        for (p, &(m, r)) in self.pairs.iter().zip(&nodes) {
            let _ = write!(
                hc,
                "\nlisten {}\n    bind 127.0.0.1:{}\n    balance first\n    option tcp-check\n    \
                 tcp-check connect\n    tcp-check send \"AUTH hc hcpw\\r\\n\"\n    \
                 tcp-check expect string +OK\n    \
                 tcp-check send \"INFO replication\\r\\nQUIT\\r\\n\"\n    \
                 tcp-check expect string role:master\n    \
                 server m 127.0.0.1:{m} check\n    server r 127.0.0.1:{r} check\n",
                p.name, p.addr
            );
        }
        let conf = dir.join("haproxy.cfg");
        std::fs::write(&conf, hc)?;
        let log = dir.join("haproxy.log");
        let mut child = Command::new(haproxy_program(&cfg.ha.haproxy))
            .arg("-f")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("starting haproxy")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if let Some(status) = child.try_wait()? {
            bail!(
                "haproxy exited ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        self.children.push(child);

        for p in &self.pairs {
            wait_answers(p.addr).await?;
            wait_watched(&sentinel_ports, None, &p.name).await?;
        }
        Ok(())
    }

    /// A free port not handed out before.
    fn port(&mut self) -> Result<u16> {
        loop {
            let p = crate::free_port()?;
            if self.ports.insert(p) {
                return Ok(p);
            }
        }
    }

    /// Spawns `program <conf>`; its pid.
    fn spawn(&mut self, program: &Path, conf: &Path) -> Result<u32> {
        let child = Command::new(program)
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    fn logs(&self) -> Vec<PathBuf> {
        self.sentinel_dirs
            .iter()
            .map(|d| d.join("sentinel.log"))
            .collect()
    }

    fn stop(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A hand-run node's redis.conf (and the ACL file beside it).
fn node_conf(dir: &Path, port: u16, master: Option<u16>) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let acl = dir.join("users.acl");
    std::fs::write(&acl, ACL_FILE)?;
    let mut conf = format!(
        "bind 127.0.0.1\nport {port}\ndaemonize no\nset-proc-title no\ndir \"{d}\"\n\
         logfile \"{d}/redis.log\"\nappendonly yes\nappendfsync everysec\nsave \"\"\n\
         maxmemory 1gb\nrepl-diskless-sync-delay 0\naclfile \"{}\"\nmasteruser repl\nmasterauth replpw\n",
        acl.display(),
        d = dir.display()
    );
    if let Some(m) = master {
        let _ = writeln!(conf, "replicaof 127.0.0.1 {m}");
    }
    let path = dir.join("redis.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// `haproxy` from the config: a bare name is looked up in `PATH`, then in /usr/sbin (where
/// Debian puts it, outside most users' `PATH`).
fn haproxy_program(configured: &Path) -> PathBuf {
    if configured.components().count() > 1 {
        return configured.to_path_buf();
    }
    let in_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(configured).is_file()))
        .unwrap_or(false);
    if in_path {
        configured.to_path_buf()
    } else {
        Path::new("/usr/sbin").join(configured)
    }
}

/// Waits until `port` answers PING as the hand-run default user.
async fn wait_answers(port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let pong = async {
            let mut c = conn(&At::local(port), HAND_PASSWORD).await?;
            redis::cmd("PING").query_async::<String>(&mut c).await
        }
        .await;
        if pong.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing answers at {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the replica at `port` is linked to its master and synced.
async fn wait_synced(port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_LIMIT;
    loop {
        let info = async {
            let mut c = conn(&At::local(port), HAND_PASSWORD).await?;
            redis::cmd("INFO")
                .arg("replication")
                .query_async::<String>(&mut c)
                .await
        }
        .await
        .unwrap_or_default();
        if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the replica at {port} did not sync");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// redis-benchmark SET/GET through the instance's stable address and straight to its
/// master's port, alternated, [`BENCH_ROUNDS`] rounds each (BENCH_ROUNDS), pipeline 1 and 16.
async fn address_cost(inst: &Instance) -> Result<()> {
    let rounds = crate::env_usize("BENCH_ROUNDS", BENCH_ROUNDS).max(1);
    if Command::new("redis-benchmark")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        println!("== stable address cost: skipped, no redis-benchmark (Debian's redis-tools) ==");
        return Ok(());
    }
    // The instance was never failed over: node 0 is its master.
    let node = &inst.nodes[0];
    println!(
        "== stable address cost: redis-benchmark -c 50 -n 200000, mean of {rounds} alternated rounds, ops/s =="
    );
    println!(
        "{:6} {:>12} {:>12} {:>6}   {:>12} {:>12} {:>6}",
        "", "SET address", "SET node", "ratio", "GET address", "GET node", "ratio"
    );
    for pipeline in [1, 16] {
        let (mut via, mut direct) = ([0.0; 2], [0.0; 2]);
        for _ in 0..rounds {
            let a = redis_benchmark(&inst.addr, pipeline).await?;
            let d = redis_benchmark(node, pipeline).await?;
            for k in 0..2 {
                via[k] += a[k] / rounds as f64;
                direct[k] += d[k] / rounds as f64;
            }
        }
        println!(
            "{:6} {:12.0} {:12.0} {:6.2}   {:12.0} {:12.0} {:6.2}",
            format!("-P {pipeline}"),
            via[0],
            direct[0],
            via[0] / direct[0],
            via[1],
            direct[1],
            via[1] / direct[1]
        );
    }
    Ok(())
}

/// One `redis-benchmark -t set,get` run: [SET, GET] requests per second.
async fn redis_benchmark(at: &At, pipeline: u32) -> Result<[f64; 2]> {
    let out = tokio::process::Command::new("redis-benchmark")
        .args(["-h", &at.host, "-p", &at.port.to_string()])
        .args(["--user", "default", "-a", PASSWORD])
        .args(["-t", "set,get", "-c", "50", "-n", "200000"])
        .args(["-P", &pipeline.to_string(), "--csv"])
        .stdin(Stdio::null())
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = |test: &str| {
        text.lines().find_map(|l| {
            let mut f = l.split(',').map(|f| f.trim_matches('"'));
            (f.next() == Some(test))
                .then(|| f.next()?.parse::<f64>().ok())
                .flatten()
        })
    };
    match (rps("SET"), rps("GET")) {
        (Some(set), Some(get)) => Ok([set, get]),
        _ => bail!(
            "redis-benchmark on {at}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Kills (SIGKILL) every process whose command line names a path under `dir`: crsd's
/// redis-servers, sentinels and haproxy (they outlive crsd by design) and the hand-run ones.
pub(crate) fn kill_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in procs.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            // SAFETY: kill(2) on a pid whose command line names our temporary folder.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
}
