//! The monitoring history benchmark (`BENCH_SUITE=monitor`): what one round of crsd's own
//! sampler costs (one `INFO` per node, the round recorded in one transaction, pruning), for
//! `BENCH_MONITOR_INSTANCES` instances (50 by default: 100 nodes, a master and a replica
//! each), with crsd's clock moved a minute before each round as the sampler's interval would.
//!
//! Prints each round's wall time and crsd's CPU time (this process: crsd's threads; the bench
//! itself idles meanwhile), p50 and max over `BENCH_ROUNDS` rounds (20), per node, and the
//! linear extrapolation to 1,000 nodes (500 instances); then what the rows take on disk when
//! the `sqlite3` shell can tell (its `dbstat` table).
//!
//! Then the two other costs of monitoring:
//! - a `/metrics` scrape of crsd's metrics listener with those instances: wall and crsd CPU per
//!   scrape over BENCH_SCRAPES (50);
//! - the latency collection adds on a node: `redis-benchmark` (GET, 10 clients, 100,000
//!   requests, pipeline 1) against one master, with the sampler idle, with a round every
//!   second (60 times the service's default rate), and with rounds back to back (every node
//!   asked for INFO every ~25 ms: the host's cores are then busy with collection itself),
//!   alternated BENCH_LATENCY_PAIRS (3) times; the median p99 of each and the differences.

use crate::{ms, process_cpu, Client};
use anyhow::{bail, Context, Result};
use crsd_core::clock::OffsetClock;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Bench2024(x";

pub async fn run(dir: &Path) -> Result<()> {
    let instances = crate::env_usize("BENCH_MONITOR_INSTANCES", 50);
    let rounds = crate::env_usize("BENCH_ROUNDS", 20).max(1);
    let mut cfg = crate::bench_config(dir, 20000)?;
    // A master, a replica and the stable address's port per instance, and room to spare.
    cfg.instances.port_max = cfg.instances.port_min + (instances as u16) * 4 + 100;
    // The rounds are the bench's: the loop's first one would come after an hour.
    cfg.monitor.sample_interval_secs = 3600;
    let clock = Arc::new(OffsetClock::new());
    let running = crsd::server::start(cfg.clone(), clock.clone()).await?;
    let reaper = crate::Reaper(cfg.clone());
    let created = running.bootstrap.clone().context("first account")?;
    let client = Client::new(
        running.addr.to_string(),
        created.secret_id.clone(),
        created.secret_key.clone(),
    );
    let mut result = measure(&client, &running.service, &clock, instances, rounds, &cfg).await;
    if result.is_ok() {
        result = scrapes(&running).await;
    }
    if result.is_ok() {
        result = node_latency(&running.service, &clock).await;
    }
    running.shutdown(Duration::from_secs(5)).await;
    drop(reaper);
    result
}

async fn measure(
    client: &Client,
    svc: &crsd_service::Service,
    clock: &OffsetClock,
    instances: usize,
    rounds: usize,
    cfg: &crsd::config::Config,
) -> Result<()> {
    let started = Instant::now();
    let mut left = instances;
    while left > 0 {
        let n = left.min(10);
        create(client, n).await?;
        left -= n;
    }
    let nodes: usize = svc
        .store()
        .live_instances()
        .await?
        .iter()
        .map(|i| i.nodes.len())
        .sum();
    println!(
        "monitor: {instances} instances, {nodes} nodes running after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    // Nodes that did not answer (on a loaded host, one failed over or restarting).
    let mut skipped = 0;
    for _ in 0..rounds {
        clock.advance(chrono::Duration::seconds(60));
        let cpu = process_cpu();
        let t = Instant::now();
        let round = svc.sample_once().await?;
        walls.push(t.elapsed());
        cpus.push(process_cpu().saturating_sub(cpu));
        if round.sampled == 0 {
            bail!("a round sampled no node: {round:?}");
        }
        skipped += round.skipped;
    }
    let (wall_p50, _) = crate::p50_p99(&mut walls);
    let (cpu_p50, _) = crate::p50_p99(&mut cpus);
    let wall_max = *walls.last().context("a round")?;
    let cpu_max = *cpus.last().context("a round")?;
    let per_node = |d: Duration| d.as_secs_f64() * 1e6 / nodes as f64;
    println!(
        "sample_once, {nodes} nodes, {rounds} rounds: wall p50 {:.1} ms (max {:.1}), crsd CPU \
         p50 {:.1} ms (max {:.1}); per node {:.0} us wall, {:.0} us CPU; {skipped} answers \
         missing",
        ms(wall_p50),
        ms(wall_max),
        ms(cpu_p50),
        ms(cpu_max),
        per_node(wall_p50),
        per_node(cpu_p50)
    );
    // Linear in the nodes: milliseconds a round would take for 1,000.
    let at_1000 = |d: Duration| d.as_secs_f64() * 1000.0 / nodes as f64 * 1000.0;
    println!(
        "extrapolated to 1,000 nodes: about {:.0} ms wall and {:.0} ms CPU a round, {:.2}% of \
         one core at one round a minute",
        at_1000(wall_p50),
        at_1000(cpu_p50),
        at_1000(cpu_p50) / 60_000.0 * 100.0
    );
    let rows = rounds * nodes;
    let db = cfg.data_dir.join("crsd.db");
    match table_bytes(&db) {
        Some(bytes) => println!(
            "storage: {rows} samples take {:.1} MB with their indexes, {:.0} bytes a sample: \
             {:.0} MB for 1,000 nodes over 24 h at one a minute",
            bytes as f64 / 1e6,
            bytes as f64 / rows as f64,
            bytes as f64 / rows as f64 * 1000.0 * 1440.0 / 1e6
        ),
        None => println!("storage: not measured (no sqlite3 shell with dbstat)"),
    }
    Ok(())
}

/// `/metrics` scrapes: wall and crsd CPU each.
async fn scrapes(running: &crsd::server::Running) -> Result<()> {
    let n = crate::env_usize("BENCH_SCRAPES", 50).max(1);
    let addr = running.metrics_addr.context("no metrics listener")?;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/metrics");
    let mut walls = Vec::new();
    let mut cpus = Vec::new();
    let mut bytes = 0;
    for _ in 0..n {
        let cpu = process_cpu();
        let t = Instant::now();
        let body = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        walls.push(t.elapsed());
        // The bench's own share (reading the answer) is counted too: an upper bound.
        cpus.push(process_cpu().saturating_sub(cpu));
        bytes = body.len();
    }
    let (wall_p50, _) = crate::p50_p99(&mut walls);
    let (cpu_p50, _) = crate::p50_p99(&mut cpus);
    println!(
        "/metrics scrape ({} KB), {n} scrapes: wall p50 {:.2} ms (max {:.2}), CPU p50 {:.2} ms \
         (max {:.2}, crsd and the bench's reading together)",
        bytes / 1024,
        ms(wall_p50),
        ms(*walls.last().context("a scrape")?),
        ms(cpu_p50),
        ms(*cpus.last().context("a scrape")?)
    );
    Ok(())
}

/// p99 of GETs on one master with the sampler idle and with rounds back to back.
async fn node_latency(svc: &Arc<crsd_service::Service>, clock: &Arc<OffsetClock>) -> Result<()> {
    let pairs = crate::env_usize("BENCH_LATENCY_PAIRS", 3).max(1);
    let inst = svc
        .store()
        .live_instances()
        .await?
        .into_iter()
        .next()
        .context("no instance")?;
    let master = inst
        .nodes
        .iter()
        .find(|n| n.role == crsd_core::model::NodeRole::Master)
        .context("no master")?;
    let (host, port) = (svc.node_host(master), master.port);
    let mut quiet = Vec::new();
    let mut paced = Vec::new();
    let mut busy = Vec::new();
    let mut rounds_run = [0usize; 2];
    for _ in 0..pairs {
        quiet.push(benchmark_p99(&host, port).await?);
        for (k, every) in [Duration::from_secs(1), Duration::ZERO]
            .into_iter()
            .enumerate()
        {
            let stop = Arc::new(AtomicBool::new(false));
            let sampler = {
                let (svc, clock, stop) = (svc.clone(), clock.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        clock.advance(chrono::Duration::seconds(60));
                        if svc.sample_once().await.is_err() {
                            break;
                        }
                        n += 1;
                        tokio::time::sleep(every.saturating_sub(t.elapsed())).await;
                    }
                    n
                })
            };
            let p99 = benchmark_p99(&host, port).await;
            stop.store(true, Ordering::Relaxed);
            rounds_run[k] += sampler.await.unwrap_or(0);
            if k == 0 {
                paced.push(p99?)
            } else {
                busy.push(p99?)
            }
        }
    }
    let each = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (q, p, b) = (median(&quiet), median(&paced), median(&busy));
    println!("node latency, redis-benchmark GET p99 on {host}:{port} (median of {pairs}):");
    println!(
        "  sampler idle                {q:7.3} ms  [{}]",
        each(&quiet)
    );
    println!(
        "  a round every second        {p:7.3} ms  [{}] ({} rounds): added {:.3} ms (target <= 1 ms)",
        each(&paced),
        rounds_run[0],
        p - q
    );
    println!(
        "  rounds back to back         {b:7.3} ms  [{}] ({} rounds): added {:.3} ms",
        each(&busy),
        rounds_run[1],
        b - q
    );
    Ok(())
}

/// `redis-benchmark -t get` p99 in ms, from its CSV line.
async fn benchmark_p99(host: &str, port: u16) -> Result<f64> {
    let out = tokio::process::Command::new("redis-benchmark")
        .args(["-h", host, "-p", &port.to_string(), "-a", PASSWORD])
        .args([
            "-t",
            "get",
            "-n",
            "100000",
            "-c",
            "10",
            "-P",
            "1",
            "--csv",
            "--precision",
            "3",
        ])
        .output()
        .await
        .context("running redis-benchmark")?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
    let line = text
        .lines()
        .find(|l| l.starts_with("\"GET\""))
        .with_context(|| format!("no GET line from redis-benchmark: {text}"))?;
    let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
    fields
        .get(6)
        .and_then(|f| f.parse().ok())
        .with_context(|| format!("no p99 in {line}"))
}

/// Bytes of the node_samples table and its indexes, by the `sqlite3` shell's `dbstat`.
fn table_bytes(db: &Path) -> Option<u64> {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE '%node_samples%'")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Creates `n` instances (a master and a replica, 1 GB) and waits until they run.
async fn create(client: &Client, n: usize) -> Result<()> {
    let v = client
        .call(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "1024"),
                ("goodsNum", &n.to_string()),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    let deal = v["data"]["dealId"].as_str().context("dealId")?.to_string();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let d = client
            .call("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
            .await?;
        match d["dealDetails"][0]["status"].as_i64() {
            Some(4) => return Ok(()),
            Some(5) => bail!("deal failed: {d}"),
            _ if Instant::now() > deadline => bail!("deal {deal} not delivered: {d}"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
