//! `crsd-bench`: what crsd costs over raw redis-server, measured in one run on this machine.
//!
//! 1. Provisioning: CreateRedis -> instance running (status 2), p50/p99 over N instances,
//!    next to raw redis-server spawn-to-PING of a master+replica pair with the same kind of
//!    config (and of a single process, for scale); then API 3.0 CreateInstances with 3
//!    replicas -> running over M instances, next to a raw master + 3 replicas spawned and in
//!    sync.
//! 2. Control-plane throughput: signed DescribeRedis requests per second with M instances
//!    in the account, next to raw PING round trips per second against one redis-server with
//!    the same client concurrency.
//!
//! With `BENCH_SUITE=backups` (`make bench-backups`) it measures backups instead: see
//! `backups.rs`; with `BENCH_SUITE=load` (`make bench-load`), 500 signed clients while backups
//! run: see `load.rs`; with `BENCH_SUITE=failover` (`make bench-failover`), kill -9 of a
//! master behind its stable address, with crsd up, down, and a hand-run Sentinel + HAProxy
//! stack: see `failover.rs`; with `BENCH_SUITE=monitor` (`make bench-monitor`), one round of
//! crsd's own monitoring history for 100 nodes: see `monitor.rs`; with `BENCH_SUITE=cluster`
//! (`make bench-cluster`), the cluster edition's create and shard failover next to a Redis
//! Cluster made by hand: see `cluster.rs`; with `BENCH_SUITE=reshard` (`make bench-reshard`),
//! resharding 3 to 5 shards of a million keys next to `redis-cli --cluster rebalance`: see
//! `reshard.rs`.
//!
//! Run with `make bench` (release build). Environment: BENCH_ACTION (DescribeRedis; e.g.
//! DescribeRedisZones measures the HTTP + signature path alone), BENCH_CREATE (20),
//! BENCH_CREATE3 (10, the creates with 3 replicas), BENCH_INSTANCES (200), BENCH_SECONDS (5),
//! BENCH_CONCURRENCY (64). Every suite runs crsd with its warm pool as shipped (each measured
//! create first waits until the pool is full again); BENCH_WARM=0 runs it without one,
//! BENCH_WARM_NODES sets the standard pool's size.

mod backups;
mod cluster;
mod failover;
mod load;
mod monitor;
mod reshard;
mod tc3;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use crsd::config::Config;
use crsd_core::clock::SystemClock;
use hmac::{Hmac, Mac};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What the provisioning part measured: p50 and p99 of each kind of start, and the CPU time
/// this process (crsd's threads plus the bench's client) spent per raw pair and per create.
/// redis-server's own CPU is not in these: it is another process.
struct Provisioning {
    raw_single: (Duration, Duration),
    raw_pair: (Duration, Duration),
    create: (Duration, Duration),
    /// Raw master + 3 replicas, and CreateInstances with 3 replicas.
    raw_four: (Duration, Duration),
    create3: (Duration, Duration),
    raw_pair_cpu: Duration,
    create_cpu: Duration,
}

/// What the control-plane part measured: requests per second against crsd and raw PINGs per
/// second, and this process's CPU time per crsd request.
struct ControlPlane {
    rps: f64,
    raw_rps: f64,
    cpu_per_request: Duration,
}

fn p50_p99(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    (percentile(samples, 0.5), percentile(samples, 0.99))
}

/// Zero for no samples (e.g. `BENCH_CREATE3=0`).
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// CPU time this whole process (crsd's threads and the bench's own) has used so far.
fn process_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Waits until crsd's warm pool holds every node its settings want (a create takes two or
/// six; the supervisor's next pass starts new ones) and that pass's later work (the
/// exporter's restart for the new nodes) is over, so that no measured create or raw start
/// shares the host with a refill. Without a pool (`BENCH_WARM=0`) only the settling wait.
pub(crate) async fn wait_warm_pool(svc: &crsd_service::Service) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !svc.warm_pool_full().await? {
        if Instant::now() > deadline {
            bail!("crsd's warm pool did not fill up in 60 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    Ok(())
}

/// What the supervisor's pass does after the pool's refill takes well under this.
const SETTLE: Duration = Duration::from_millis(300);

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::main]
async fn main() -> Result<()> {
    // crsd runs inside this program, so Sentinel's address hook (written at crsd's start to
    // run this very binary) lands here: do what `crsd address-hook` does.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("address-hook") {
        return address_hook(&args[2..]).await;
    }
    let n_create = env_usize("BENCH_CREATE", 20);
    let n_create3 = env_usize("BENCH_CREATE3", 10);
    let n_instances = env_usize("BENCH_INSTANCES", 200);
    let seconds = env_usize("BENCH_SECONDS", 5) as u64;
    let concurrency = env_usize("BENCH_CONCURRENCY", 64);
    if std::env::var_os("RUST_LOG").is_some() {
        // A timeline of each create (crsd's own events, microsecond timestamps) on stderr.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .with_writer(std::io::stderr)
            .init();
    }
    let dir = tempfile::tempdir()?;
    if std::env::var("BENCH_SUITE").as_deref() == Ok("backups") {
        return backups::run(dir.path()).await;
    }
    if std::env::var("BENCH_SUITE").as_deref() == Ok("load") {
        return load::run(dir.path()).await;
    }
    if std::env::var("BENCH_SUITE").as_deref() == Ok("failover") {
        return failover::run(dir.path()).await;
    }
    if std::env::var("BENCH_SUITE").as_deref() == Ok("monitor") {
        return monitor::run(dir.path()).await;
    }
    if std::env::var("BENCH_SUITE").as_deref() == Ok("cluster") {
        return cluster::run(dir.path()).await;
    }
    if std::env::var("BENCH_SUITE").as_deref() == Ok("reshard") {
        return reshard::run(dir.path()).await;
    }

    println!(
        "crsd-bench: {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );

    // ---- crsd ----
    let mut cfg = bench_config(dir.path(), 18000)?; // below the kernel's ephemeral range
                                                    // BENCH_CEILING=0 runs the nodes without their cgroup ceilings (to see what those cost).
    cfg.instances.ceiling = std::env::var("BENCH_CEILING").as_deref() != Ok("0");
    // Per instance its stable address and a port per node.
    cfg.instances.port_max =
        18000 + (3 * n_instances as u16) + 5 * n_create as u16 + 5 * n_create3 as u16 + 100;
    for z in &mut cfg.catalog.zones {
        for t in &mut z.types {
            t.max_buy_num = 50;
        }
    }
    let (running, client) = start_crsd(&cfg).await?;
    // Whatever happens next (a panic, stdout closed by `| head`), crsd's processes go.
    let reaper = Reaper(cfg.clone());
    let result = run_crsd(
        &client,
        &running.service,
        n_create,
        n_create3,
        n_instances,
        Load {
            seconds,
            concurrency,
        },
        dir.path(),
    )
    .await;
    running.shutdown(Duration::from_secs(5)).await;
    drop(reaper);
    let (
        Provisioning {
            raw_single,
            raw_pair,
            create,
            raw_pair_cpu,
            create_cpu,
            raw_four,
            create3,
        },
        ControlPlane {
            rps,
            raw_rps,
            cpu_per_request,
        },
    ) = result?;

    println!();
    println!("== provisioning: request -> running, {n_create} instances ==");
    println!(
        "raw redis-server spawn->PING (1 process)       p50 {:7.1} ms  p99 {:7.1} ms",
        ms(raw_single.0),
        ms(raw_single.1)
    );
    println!(
        "raw master+replica spawn->PING->in sync        p50 {:7.1} ms  p99 {:7.1} ms",
        ms(raw_pair.0),
        ms(raw_pair.1)
    );
    println!(
        "crsd CreateRedis->status 2 (master+replica)    p50 {:7.1} ms  p99 {:7.1} ms",
        ms(create.0),
        ms(create.1)
    );
    println!("ratio crsd / raw pair                          p50 {:7.2} x   p99 {:7.2} x   (target <= 1.5 x)", ms(create.0) / ms(raw_pair.0), ms(create.1) / ms(raw_pair.1));
    println!(
        "ratio crsd / raw single process                p50 {:7.2} x   p99 {:7.2} x",
        ms(create.0) / ms(raw_single.0),
        ms(create.1) / ms(raw_single.1)
    );
    println!(
        "cpu of crsd + client per create: {:.1} ms (raw pair's client: {:.1} ms; redis-server's own not counted)",
        ms(create_cpu),
        ms(raw_pair_cpu)
    );
    println!();
    println!("== provisioning with 3 replicas: request -> running, {n_create3} instances ==");
    println!(
        "raw master+3 replicas spawn->PING->in sync     p50 {:7.1} ms  p99 {:7.1} ms",
        ms(raw_four.0),
        ms(raw_four.1)
    );
    println!(
        "crsd CreateInstances 3 replicas->running       p50 {:7.1} ms  p99 {:7.1} ms",
        ms(create3.0),
        ms(create3.1)
    );
    println!("ratio crsd / raw master+3 replicas             p50 {:7.2} x   p99 {:7.2} x   (target <= 1.5 x)", ms(create3.0) / ms(raw_four.0), ms(create3.1) / ms(raw_four.1));
    println!();
    println!("== control plane: signed DescribeRedis, {n_instances} instances, {concurrency} concurrent, {seconds} s ==");
    println!("raw redis PING round trips                     {raw_rps:10.0} /s");
    println!("crsd signed DescribeRedis                      {rps:10.0} /s   (target >= 10000 /s)");
    println!(
        "ratio crsd / raw PING                          {:10.3}",
        rps / raw_rps
    );
    println!(
        "cpu of crsd + client per request               {:10.0} us",
        cpu_per_request.as_secs_f64() * 1e6
    );
    Ok(())
}

/// How hard the control-plane run drives crsd: `concurrency` clients for `seconds`.
struct Load {
    seconds: u64,
    concurrency: usize,
}

async fn run_crsd(
    client: &Client,
    svc: &crsd_service::Service,
    n_create: usize,
    n_create3: usize,
    n_instances: usize,
    Load {
        seconds,
        concurrency,
    }: Load,
    dir: &Path,
) -> Result<(Provisioning, ControlPlane)> {
    // Provisioning latency, one at a time, each crsd create right after one raw single spawn
    // and one raw pair spawn, so that all three see the same machine.
    let mut lat = Vec::new();
    let mut raw_single = Vec::new();
    let mut raw_pair = Vec::new();
    let (mut raw_cpu, mut crsd_cpu) = (Duration::ZERO, Duration::ZERO);
    for i in 0..n_create {
        wait_warm_pool(svc).await?;
        raw_single.push(raw_spawn_once(dir, i, 0).await?);
        let c0 = process_cpu();
        raw_pair.push(raw_spawn_once(dir, i, 1).await?);
        let c1 = process_cpu();
        raw_cpu += c1 - c0;
        let t0 = Instant::now();
        tracing::info!("bench: CreateRedis sent");
        let v = client
            .call(
                "CreateRedis",
                &[
                    ("zoneId", "100002"),
                    ("typeId", "2"),
                    ("memSize", "1024"),
                    ("goodsNum", "1"),
                    ("period", "1"),
                    ("password", "Bench2024(x"),
                ],
            )
            .await?;
        let deal = v["data"]["dealId"].as_str().context("dealId")?.to_string();
        tracing::info!(%deal, "bench: CreateRedis answered");
        loop {
            let d = client
                .call("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
                .await?;
            match d["dealDetails"][0]["status"].as_i64() {
                Some(4) => break,
                Some(5) => bail!("deal failed: {d}"),
                _ => tokio::time::sleep(Duration::from_millis(1)).await,
            }
        }
        tracing::info!(%deal, "bench: deal seen delivered");
        lat.push(t0.elapsed());
        crsd_cpu += process_cpu() - c1;
    }
    // With 3 replicas (API 3.0 only), each right after a raw master + 3 replicas.
    let api3 = client.tc3();
    let mut raw_four = Vec::new();
    let mut lat3 = Vec::new();
    for i in 0..n_create3 {
        wait_warm_pool(svc).await?;
        raw_four.push(raw_spawn_once(dir, i, 3).await?);
        let t0 = Instant::now();
        let r = api3
            .call(
                "CreateInstances",
                &serde_json::json!({
                    "TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "BillingMode": 0,
                    "ZoneId": 100002, "Password": "Bench2024(x", "RedisShardNum": 1,
                    "RedisReplicasNum": 3, "InstanceName": format!("bench3-{i}"),
                }),
            )
            .await?;
        let deal = r["DealId"].as_str().context("DealId")?.to_string();
        client.wait_deal(&deal, Duration::from_millis(1)).await?;
        lat3.push(t0.elapsed());
    }
    let create = Provisioning {
        raw_single: p50_p99(&mut raw_single),
        raw_pair: p50_p99(&mut raw_pair),
        create: p50_p99(&mut lat),
        raw_pair_cpu: raw_cpu / n_create as u32,
        create_cpu: crsd_cpu / n_create as u32,
        raw_four: p50_p99(&mut raw_four),
        create3: p50_p99(&mut lat3),
    };

    // Fill the account up to n_instances, 10 per deal.
    let mut have = n_create + n_create3;
    let mut deals = Vec::new();
    while have < n_instances {
        let n = (n_instances - have).min(10);
        let v = client
            .call(
                "CreateRedis",
                &[
                    ("zoneId", "100002"),
                    ("typeId", "2"),
                    ("memSize", "1024"),
                    ("goodsNum", &n.to_string()),
                    ("period", "1"),
                    ("password", "Bench2024(x"),
                ],
            )
            .await?;
        deals.push(v["data"]["dealId"].as_str().context("dealId")?.to_string());
        have += n;
    }
    for deal in deals {
        loop {
            let d = client
                .call("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
                .await?;
            match d["dealDetails"][0]["status"].as_i64() {
                Some(4) => break,
                Some(5) => bail!("deal failed: {d}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
    let total = client
        .call("DescribeRedis", &[("limit", "1"), ("offset", "0")])
        .await?["totalCount"]
        .as_i64()
        .unwrap_or(0);
    if total as usize != n_instances.max(n_create + n_create3) {
        bail!("expected {n_instances} instances, DescribeRedis says {total}");
    }

    // Raw PING throughput against one redis-server, same concurrency, same process.
    let raw_rps = raw_ping_rps(dir, seconds, concurrency).await?;

    // Signed DescribeRedis throughput.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let c = client.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let mut i = w;
            while Instant::now() < stop {
                let offset = (i * 10 % n_instances).to_string();
                let body = c
                    .raw_call(
                        &std::env::var("BENCH_ACTION").unwrap_or("DescribeRedis".into()),
                        &[("limit", "10"), ("offset", &offset)],
                    )
                    .await?;
                if !body.starts_with(r#"{"code":0"#) {
                    bail!("DescribeRedis failed: {body}");
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += concurrency;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    let t0 = Instant::now();
    let c0 = process_cpu();
    for w in workers {
        w.await??;
    }
    let n = done.load(Ordering::Relaxed);
    let rps = n as f64 / t0.elapsed().as_secs_f64();
    let cpu_per_request = (process_cpu() - c0) / n.max(1) as u32;
    Ok((
        create,
        ControlPlane {
            rps,
            raw_rps,
            cpu_per_request,
        },
    ))
}

fn redis_conf(dir: &Path, port: u16, master: Option<u16>) -> Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut conf = format!(
        "bind 127.0.0.1\nport {port}\ndaemonize no\ndir {}\nappendonly yes\nappendfsync everysec\nsave \"\"\nmaxmemory 1gb\nrepl-diskless-sync-delay 0\n",
        dir.display()
    );
    if let Some(m) = master {
        conf.push_str(&format!("replicaof 127.0.0.1 {m}\n"));
    }
    let path = dir.join("redis.conf");
    std::fs::write(&path, conf)?;
    Ok(path)
}

/// Spawn -> PING answered (and, with replicas, every replica in sync), once: a master and
/// `replicas` replicas, all spawned at once.
async fn raw_spawn_once(dir: &Path, i: usize, replicas: usize) -> Result<Duration> {
    let base = dir.join(format!("raw-{replicas}-{i}"));
    let mp = free_port()?;
    let t0 = Instant::now();
    let mut children = vec![spawn(&redis_conf(&base.join("m"), mp, None)?)?];
    let mut rps = Vec::new();
    for r in 0..replicas {
        let rp = free_port()?;
        children.push(spawn(&redis_conf(
            &base.join(format!("r{r}")),
            rp,
            Some(mp),
        )?)?);
        rps.push(rp);
    }
    tracing::debug!(
        replicas,
        took_us = t0.elapsed().as_micros() as u64,
        "bench: raw processes spawned"
    );
    wait_ping(mp).await?;
    for &rp in &rps {
        wait_ping(rp).await?;
    }
    for &rp in &rps {
        wait_sync(rp).await?;
    }
    let took = t0.elapsed();
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
    Ok(took)
}

fn spawn(conf: &Path) -> Result<std::process::Child> {
    Ok(Command::new("redis-server")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

async fn wait_ping(port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}/")) {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("redis-server on {port} did not answer");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_sync(port: u16) -> Result<()> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let mut c = client.get_multiplexed_async_connection().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut c)
            .await?;
        if info.contains("master_link_status:up") && info.contains("master_sync_in_progress:0") {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("replica on {port} did not sync");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn raw_ping_rps(dir: &Path, seconds: u64, concurrency: usize) -> Result<f64> {
    let port = free_port()?;
    let mut child = spawn(&redis_conf(&dir.join("raw-ping"), port, None)?)?;
    wait_ping(port).await?;
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
            // One connection per worker, like one HTTP connection per worker below.
            let mut c = client.get_multiplexed_async_connection().await?;
            while Instant::now() < stop {
                let _: String = redis::cmd("PING").query_async(&mut c).await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    let t0 = Instant::now();
    for w in workers {
        w.await??;
    }
    let rps = done.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    Ok(rps)
}

/// A crsd for a benchmark in `dir`: no rate limit, a first account that can buy anything,
/// instance ports from `port_min` (100 of them).
fn bench_config(dir: &Path, port_min: u16) -> Result<Config> {
    let mut cfg = Config {
        data_dir: dir.join("crsd"),
        listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    cfg.api.rate_per_second = 0.0;
    cfg.instances.port_min = port_min;
    cfg.instances.port_max = port_min + 99;
    cfg.accounts.bootstrap_balance = i64::MAX / 4;
    // Free ports, not Sentinel's default ones: a sentinel left on those by another run would
    // stop crsd from starting its own.
    cfg.ha.sentinel_ports = vec![free_port()?, free_port()?, free_port()?];
    // Any free port: a crsd left on the default one must not stop a benchmark.
    cfg.metrics.listen = "127.0.0.1:0".into();
    // The exporter runs as on a host (it follows every create), on a free port.
    cfg.metrics.exporter_listen = format!("127.0.0.1:{}", free_port()?);
    // crsd's warm pool as shipped; BENCH_WARM=0: none, every create starts its nodes (what
    // the pool saves).
    if std::env::var("BENCH_WARM").as_deref() == Ok("0") {
        cfg.instances.warm_nodes = 0;
        cfg.instances.warm_cluster_nodes = 0;
    }
    // BENCH_WARM_NODES: another size of the standard pool.
    if let Some(n) = std::env::var("BENCH_WARM_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        cfg.instances.warm_nodes = n;
    }
    Ok(cfg)
}

/// Starts crsd in this process and makes a client of its first account.
async fn start_crsd(cfg: &Config) -> Result<(crsd::server::Running, Client)> {
    let running = crsd::server::start(cfg.clone(), Arc::new(SystemClock)).await?;
    let created = running.bootstrap.clone().context("first account")?;
    let client = Client::new(
        running.addr.to_string(),
        created.secret_id.clone(),
        created.secret_key.clone(),
    );
    Ok((running, client))
}

/// Kills what crsd started when dropped, before the data folder goes.
pub(crate) struct Reaper(pub(crate) Config);

impl Drop for Reaper {
    fn drop(&mut self) {
        kill_all(&self.0);
    }
}

/// Kills every redis-server under `data` (crsd's data dir) and removes their cgroups.
fn kill_all(cfg: &Config) {
    let data = cfg.data_dir.as_path();
    let Ok(out) = Command::new("find")
        .arg(data)
        .args(["-name", "*.pid"])
        .output()
    else {
        return;
    };
    for path in String::from_utf8_lossy(&out.stdout).lines() {
        if let Ok(pid) = std::fs::read_to_string(path) {
            let pid = pid.trim().to_string();
            let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // Nodes, sentinels, the proxy (killing its master ends its workers), the exporter.
            if [
                "redis-server",
                "redis-sentinel",
                "haproxy",
                "prometheus-redis-exporter",
            ]
            .iter()
            .any(|p| cmd.contains(p))
            {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
    }
    let engine = crsd_engine::Engine::new(crsd::server::engine_config(cfg));
    // <data>/instances/<instance>/<node id>: one cgroup per node, named by its id.
    let instances = std::fs::read_dir(data.join("instances"))
        .into_iter()
        .flatten()
        .flatten();
    for inst in instances {
        let nodes = std::fs::read_dir(inst.path())
            .into_iter()
            .flatten()
            .flatten();
        for node in nodes.filter(|e| e.path().is_dir()) {
            let id = node.file_name().to_string_lossy().into_owned();
            // A killed process leaves its cgroup a moment later.
            for _ in 0..50 {
                if engine.remove_ceiling(&id).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A v2 client that signs every request (HmacSHA256, fresh Nonce) as the SDK does.
#[derive(Clone)]
pub(crate) struct Client {
    host: String,
    secret_id: String,
    secret_key: String,
    http: reqwest::Client,
}

static NONCE: AtomicU64 = AtomicU64::new(1);

impl Client {
    fn new(host: String, secret_id: String, secret_key: String) -> Client {
        Client {
            host,
            secret_id,
            secret_key,
            http: reqwest::Client::new(),
        }
    }

    fn query(&self, action: &str, params: &[(&str, &str)]) -> String {
        let nonce = NONCE.fetch_add(1, Ordering::Relaxed).to_string();
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .to_string();
        let mut all: Vec<(&str, &str)> = params.to_vec();
        all.extend([
            ("Action", action),
            ("SecretId", self.secret_id.as_str()),
            ("Nonce", nonce.as_str()),
            ("Timestamp", ts.as_str()),
            ("SignatureMethod", "HmacSHA256"),
        ]);
        all.sort();
        let plain: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let msg = format!("GET{}/v2/index.php?{}", self.host, plain.join("&"));
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.secret_key.as_bytes())
            .expect("any key length");
        mac.update(msg.as_bytes());
        let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs(all.iter());
        ser.append_pair("Signature", &sig);
        ser.finish()
    }

    async fn raw_call(&self, action: &str, params: &[(&str, &str)]) -> Result<String> {
        Ok(self.status_call(action, params).await?.1)
    }

    /// The HTTP status and the body.
    async fn status_call(&self, action: &str, params: &[(&str, &str)]) -> Result<(u16, String)> {
        let url = format!(
            "http://{}/v2/index.php?{}",
            self.host,
            self.query(action, params)
        );
        let resp = self.http.get(url).send().await?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    /// An API 3.0 client of the same account.
    fn tc3(&self) -> tc3::Tc3Client {
        tc3::Tc3Client::new(
            self.host.clone(),
            self.secret_id.clone(),
            self.secret_key.clone(),
        )
    }

    /// Polls DescribeRedisDealDetail until the deal is delivered (4); its first instance id.
    async fn wait_deal(&self, deal: &str, every: Duration) -> Result<String> {
        loop {
            let d = self
                .call("DescribeRedisDealDetail", &[("dealIds.0", deal)])
                .await?;
            match d["dealDetails"][0]["status"].as_i64() {
                Some(4) => {
                    return Ok(d["dealDetails"][0]["goodsDetail"]["redisIds"][0]
                        .as_str()
                        .unwrap_or_default()
                        .to_string())
                }
                Some(5) => bail!("deal failed: {d}"),
                _ => tokio::time::sleep(every).await,
            }
        }
    }

    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<serde_json::Value> {
        let body = self.raw_call(action, params).await?;
        let v: serde_json::Value = serde_json::from_str(&body)?;
        if v["code"] != 0 {
            bail!("{action} failed: {v}");
        }
        Ok(v)
    }
}

/// `<binary> address-hook [--config F] --data-dir D <Sentinel's 7 arguments>`.
async fn address_hook(args: &[String]) -> Result<()> {
    let mut cfg = crsd::config::Config::default();
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => {
                let path = it.next().context("--config needs a file")?;
                cfg = crsd::config::Config::load(std::path::Path::new(path))?;
            }
            "--data-dir" => cfg.data_dir = it.next().context("--data-dir needs a folder")?.into(),
            _ => rest.push(a.clone()),
        }
    }
    crsd::server::address_hook(&cfg, &rest).await
}
