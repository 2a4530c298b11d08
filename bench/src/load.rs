//! `BENCH_SUITE=load` (`make bench-load`): many signed clients at once while backups run.
//!
//! One instance holds BENCH_KEYS keys (default 1,000,000) and is backed up again and again
//! (ManualBackupInstance, one after the other) while BENCH_CLIENTS clients (default 500), each
//! with its own connection, send signed v2 requests (DescribeRedis, GetRedisBackupList,
//! DescribeRedisZones in turn, fresh Nonce each) for BENCH_SECONDS (default 20). It prints the
//! request rate, p50/p99/max latency, the backups finished meanwhile, and counts every 5xx,
//! transport error and non-zero `code`; it fails (exit 1) if there is any.

use crate::backups::{connect, populate};
use crate::Client;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PASSWORD: &str = "Bench2024(x";

pub async fn run(dir: &Path) -> Result<()> {
    let clients = crate::env_usize("BENCH_CLIENTS", 500);
    let seconds = crate::env_usize("BENCH_SECONDS", 20) as u64;
    let keys = crate::env_usize("BENCH_KEYS", 1_000_000);
    let mut cfg = crate::bench_config(dir, 18600)?;
    cfg.backups.manual_per_day = 10_000;
    let (running, client) = crate::start_crsd(&cfg).await?;
    let reaper = crate::Reaper(cfg.clone());
    let result = measure(&client, clients, seconds, keys).await;
    running.shutdown(Duration::from_secs(5)).await;
    drop(reaper);
    result
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    refused: AtomicU64,
}

async fn measure(client: &Client, clients: usize, seconds: u64, keys: usize) -> Result<()> {
    let v = client
        .call(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "4096"),
                ("goodsNum", "1"),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    let deal = v["data"]["dealId"].as_str().context("dealId")?.to_string();
    let (id, port) = loop {
        let d = client
            .call("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
            .await?;
        match d["dealDetails"][0]["status"].as_i64() {
            Some(4) => {
                let id = d["dealDetails"][0]["goodsDetail"]["redisIds"][0]
                    .as_str()
                    .context("redisIds")?
                    .to_string();
                let inst = client
                    .call("DescribeRedis", &[("redisId", &id), ("limit", "1")])
                    .await?;
                let port = inst["data"]["redisSet"][0]["port"]
                    .as_u64()
                    .context("port")?;
                break (id, port);
            }
            Some(5) => bail!("deal failed: {d}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut user = connect(&format!("redis://:{PASSWORD}@127.0.0.1:{port}/")).await?;
    populate(&mut user, keys).await?;
    println!(
        "crsd-bench load: {clients} signed clients for {seconds} s, backups of {keys} keys running"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let backups = tokio::spawn(backup_loop(client.clone(), id.clone(), stop.clone()));
    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut workers = Vec::new();
    for w in 0..clients {
        // Each client its own connection pool, as separate programs would have.
        let c = Client::new(
            client.host.clone(),
            client.secret_id.clone(),
            client.secret_key.clone(),
        );
        let (tally, id) = (tally.clone(), id.clone());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while Instant::now() < deadline {
                let (action, params): (&str, Vec<(&str, &str)>) = match i % 3 {
                    0 => ("DescribeRedis", vec![("limit", "10"), ("offset", "0")]),
                    1 => ("GetRedisBackupList", vec![("redisId", &id), ("limit", "5")]),
                    _ => ("DescribeRedisZones", vec![]),
                };
                let t = Instant::now();
                match c.status_call(action, &params).await {
                    Ok((status, _)) if status >= 500 => {
                        tally.server_errors.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((_, body)) if body.starts_with(r#"{"code":0"#) => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((_, body)) => {
                        tally.refused.fetch_add(1, Ordering::Relaxed);
                        eprintln!("refused: {}", &body[..body.len().min(300)]);
                    }
                    Err(e) => {
                        tally.transport_errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("transport error: {e:#}");
                    }
                }
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let t0 = Instant::now();
    let mut lat = Vec::new();
    for w in workers {
        lat.extend(w.await?);
    }
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let finished_backups = backups.await??;

    lat.sort();
    let n = lat.len();
    let (p50, p99) = crate::p50_p99(&mut lat);
    let max = lat.last().copied().unwrap_or_default();
    let server_errors = tally.server_errors.load(Ordering::Relaxed);
    let transport = tally.transport_errors.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed);
    println!();
    println!("== load: {clients} signed clients, {seconds} s, backups running ==");
    println!(
        "requests {n}  ({:.0} /s)   ok {}",
        n as f64 / elapsed.as_secs_f64(),
        tally.ok.load(Ordering::Relaxed)
    );
    println!(
        "latency p50 {:.1} ms   p99 {:.1} ms   max {:.1} ms",
        crate::ms(p50),
        crate::ms(p99),
        crate::ms(max)
    );
    println!("backups finished during the run: {finished_backups}");
    println!("5xx {server_errors}   transport errors {transport}   refused (non-zero code) {refused}   (target: all 0)");
    if server_errors + transport + refused > 0 || finished_backups == 0 {
        bail!("the load run saw errors (or no backup finished)");
    }
    Ok(())
}

/// Backs the instance up, one backup after the other, until told to stop; returns how many
/// finished.
async fn backup_loop(client: Client, id: String, stop: Arc<AtomicBool>) -> Result<u64> {
    let mut finished = 0;
    while !stop.load(Ordering::Relaxed) {
        let v = client
            .call(
                "ManualBackupInstance",
                &[("redisId", &id), ("remark", "load")],
            )
            .await?;
        let task = v["data"]["requestId"].as_i64().context("requestId")?;
        crate::backups::wait_task(&client, task).await?;
        finished += 1;
    }
    Ok(finished)
}
