//! The backup benchmark (`BENCH_SUITE=backups`): one instance filled like
//! `DEBUG POPULATE <BENCH_KEYS> key 200` (5,000,000 keys of 200 bytes by default), then, in one
//! run and interleaved so both sides see the same machine:
//!
//! 1. backup: crsd's ManualBackupInstance task (request -> DescribeTaskInfo says 2) next to a
//!    raw `BGSAVE` of the same data on the same replica;
//! 2. download: the backup through crsd's signed URL next to Debian's nginx serving the same
//!    file with sendfile, both fetched with `curl -o /dev/null`;
//! 3. restore, with 1 replica and then on a second instance with 3 replicas (API 3.0): crsd's
//!    RestoreInstance task next to one raw redis-server start that loads the same RDB (and,
//!    for scale, as many raw redis-servers as the instance has nodes loading it at once).
//!    crsd's time is shown twice: until every node serves the restored data (a new process,
//!    loaded, every key there) and every replica is linked to its master, and until the task
//!    ends (every node's AOF written, writes taken again).

use crate::Client;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PASSWORD: &str = "Bench2024(x";
const VALUE_SIZE: usize = 200;
const ROUNDS: usize = 3;

pub async fn run(dir: &Path) -> Result<()> {
    let keys = crate::env_usize("BENCH_KEYS", 5_000_000);
    let mut cfg = crate::bench_config(dir, 18500)?;
    cfg.instances.start_timeout_secs = 600;
    let (running, client) = crate::start_crsd(&cfg).await?;
    let reaper = crate::Reaper(cfg.clone());
    let result = measure(&client, &running.service, keys, dir).await;
    running.shutdown(Duration::from_secs(5)).await;
    drop(reaper);
    result
}

async fn measure(
    client: &Client,
    svc: &crsd_service::Service,
    keys: usize,
    dir: &Path,
) -> Result<()> {
    let v = client
        .call(
            "CreateRedis",
            &[
                ("zoneId", "100002"),
                ("typeId", "2"),
                ("memSize", "8192"),
                ("goodsNum", "1"),
                ("period", "1"),
                ("password", PASSWORD),
            ],
        )
        .await?;
    let deal = v["data"]["dealId"].as_str().context("dealId")?.to_string();
    let id = loop {
        let d = client
            .call("DescribeRedisDealDetail", &[("dealIds.0", &deal)])
            .await?;
        match d["dealDetails"][0]["status"].as_i64() {
            Some(4) => {
                break d["dealDetails"][0]["goodsDetail"]["redisIds"][0]
                    .as_str()
                    .context("redisIds")?
                    .to_string()
            }
            Some(5) => bail!("deal failed: {d}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let inst = svc.store().instance(&id).await?.context("instance")?;
    let mut user = connect(&format!("redis://:{PASSWORD}@127.0.0.1:{}/", inst.port())).await?;
    let admin_url = |port: u16| {
        format!(
            "redis://{}:{}@127.0.0.1:{port}/",
            crsd_service::ADMIN_USER,
            inst.admin_secret
        )
    };
    let mut replica_admin = connect(&admin_url(
        inst.replicas().next().map(|n| n.port).unwrap_or_default(),
    ))
    .await?;

    println!("crsd-bench backups: {keys} keys of {VALUE_SIZE} bytes");
    let t0 = Instant::now();
    populate(&mut user, keys).await?;
    loop {
        let n: usize = redis::cmd("DBSIZE").query_async(&mut replica_admin).await?;
        if n >= keys {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "filled master and replica in {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // ---- backup vs raw BGSAVE, interleaved ----
    let mut raw_bgsave = Vec::new();
    let mut crsd_backup = Vec::new();
    let mut backup_id = String::new();
    for _ in 0..ROUNDS {
        raw_bgsave.push(bgsave(&mut replica_admin).await?);
        let t = Instant::now();
        let v = client
            .call(
                "ManualBackupInstance",
                &[("redisId", &id), ("remark", "bench")],
            )
            .await?;
        wait_task(
            client,
            v["data"]["requestId"].as_i64().context("requestId")?,
        )
        .await?;
        crsd_backup.push(t.elapsed());
    }
    let list = client
        .call(
            "GetRedisBackupList",
            &[("redisId", &id), ("limit", "1"), ("offset", "0")],
        )
        .await?;
    backup_id.push_str(
        list["data"]["redisBackupSet"][0]["backupId"]
            .as_str()
            .context("backupId")?,
    );
    let backup = svc.store().backup(&backup_id).await?.context("backup")?;
    let file = svc
        .backup_file(&backup_id)
        .await?
        .context("backup file")?
        .path;

    // ---- download vs nginx sendfile ----
    let urls = client
        .call(
            "GetBackupDownloadUrl",
            &[("redisId", &id), ("backupId", &backup_id)],
        )
        .await?;
    let url = urls["data"]["intranet"]
        .as_str()
        .context("url")?
        .to_string();
    let nginx = Nginx::start(dir, &file)?;
    let mut t_nginx = Vec::new();
    let mut t_crsd = Vec::new();
    for _ in 0..5 {
        t_nginx.push(curl(&nginx.url)?);
        t_crsd.push(curl(&url)?);
    }
    drop(nginx);

    // ---- restore vs raw restart loading the same RDB ----
    let one = restore_rounds(client, svc, &id, &backup_id, &file, keys, dir).await?;

    let mb = backup.size as f64 / 1e6;
    let med = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (rb, cb) = (med(&mut raw_bgsave), med(&mut crsd_backup));
    let (tn, tc) = (med(&mut t_nginx), med(&mut t_crsd));
    println!("RDB: {mb:.0} MB; medians of {ROUNDS} rounds (download: 5)");
    println!(
        "backup    crsd ManualBackupInstance task {:8.2} s   raw BGSAVE on the replica   {:8.2} s   ratio {:5.2} x (target <= 1.1 x)",
        cb.as_secs_f64(),
        rb.as_secs_f64(),
        cb.as_secs_f64() / rb.as_secs_f64()
    );
    println!(
        "download  crsd signed URL {:8.0} MB/s        nginx sendfile {:8.0} MB/s           ratio {:5.2}   (target >= 0.9)",
        mb / tc.as_secs_f64(),
        mb / tn.as_secs_f64(),
        tn.as_secs_f64() / tc.as_secs_f64()
    );
    one.print(1);
    drop(user);
    drop(replica_admin);

    // ---- the same with 3 replicas, on an instance of its own ----
    let r = client
        .tc3()
        .call(
            "CreateInstances",
            &serde_json::json!({
                "TypeId": 17, "MemSize": 8192, "GoodsNum": 1, "BillingMode": 0,
                "ZoneId": 100002, "Password": PASSWORD, "RedisShardNum": 1,
                "RedisReplicasNum": 3, "InstanceName": "bench-restore-3",
            }),
        )
        .await?;
    let deal = r["DealId"].as_str().context("DealId")?.to_string();
    let id3 = client.wait_deal(&deal, Duration::from_millis(20)).await?;
    let inst3 = svc.store().instance(&id3).await?.context("instance")?;
    let mut user3 = connect(&format!("redis://:{PASSWORD}@127.0.0.1:{}/", inst3.port())).await?;
    populate(&mut user3, keys).await?;
    let v = client
        .call(
            "ManualBackupInstance",
            &[("redisId", &id3), ("remark", "bench")],
        )
        .await?;
    wait_task(
        client,
        v["data"]["requestId"].as_i64().context("requestId")?,
    )
    .await?;
    let list = client
        .call(
            "GetRedisBackupList",
            &[("redisId", &id3), ("limit", "1"), ("offset", "0")],
        )
        .await?;
    let backup3 = list["data"]["redisBackupSet"][0]["backupId"]
        .as_str()
        .context("backupId")?
        .to_string();
    let file3 = svc
        .backup_file(&backup3)
        .await?
        .context("backup file")?
        .path;
    drop(user3);
    let three = restore_rounds(client, svc, &id3, &backup3, &file3, keys, dir).await?;
    three.print(3);
    Ok(())
}

/// Medians of the restore rounds of one instance.
struct Restores {
    /// One raw redis-server loading the RDB.
    raw: Duration,
    /// As many raw redis-servers as the instance has nodes, loading it at once.
    raw_all: Duration,
    /// Request -> every node serving the restored data, every replica linked.
    serving: Duration,
    /// Request -> task done.
    done: Duration,
}

impl Restores {
    fn print(&self, replicas: usize) {
        let s = |d: Duration| d.as_secs_f64();
        println!(
            "restore {replicas} replica(s): every node serving + replicating {:8.2} s   raw redis-server loading the RDB {:8.2} s   ratio {:5.2} x (target <= 1.3 x)",
            s(self.serving),
            s(self.raw),
            s(self.serving) / s(self.raw)
        );
        println!(
            "restore {replicas} replica(s): task done (AOF written, writes on)  {:8.2} s                                            ratio {:5.2} x",
            s(self.done),
            s(self.done) / s(self.raw)
        );
        println!(
            "restore {replicas} replica(s): {} raw redis-servers loading the RDB at once {:8.2} s (what {} cores allow)   crsd serving / that {:5.2} x",
            replicas + 1,
            s(self.raw_all),
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            s(self.serving) / s(self.raw_all)
        );
    }
}

/// ROUNDS restores of `backup_id` on `id`, each after one raw load and one raw load by as
/// many processes as the instance has nodes.
async fn restore_rounds(
    client: &Client,
    svc: &crsd_service::Service,
    id: &str,
    backup_id: &str,
    file: &Path,
    keys: usize,
    dir: &Path,
) -> Result<Restores> {
    let inst = svc.store().instance(id).await?.context("instance")?;
    let nodes: Vec<(String, bool)> = inst
        .nodes
        .iter()
        .map(|n| {
            (
                format!(
                    "redis://{}:{}@127.0.0.1:{}/",
                    crsd_service::ADMIN_USER,
                    inst.admin_secret,
                    n.port
                ),
                n.role == crsd_core::model::NodeRole::Master,
            )
        })
        .collect();
    let (mut raw, mut raw_all, mut serving, mut done) = (vec![], vec![], vec![], vec![]);
    for round in 0..ROUNDS {
        raw.push(raw_load(dir, file, round, 1).await?);
        raw_all.push(raw_load(dir, file, round, nodes.len()).await?);
        let (s, d) = restore(client, id, backup_id, &nodes, keys).await?;
        serving.push(s);
        done.push(d);
    }
    let med = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    Ok(Restores {
        raw: med(raw),
        raw_all: med(raw_all),
        serving: med(serving),
        done: med(done),
    })
}

pub(crate) async fn connect(url: &str) -> Result<redis::aio::MultiplexedConnection> {
    Ok(redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?)
}

/// `key:N` -> `value:N` padded with zero bytes to 200 bytes: what DEBUG POPULATE writes.
pub(crate) async fn populate(c: &mut redis::aio::MultiplexedConnection, keys: usize) -> Result<()> {
    const BATCH: usize = 10_000;
    let mut i = 0;
    while i < keys {
        let mut pipe = redis::pipe();
        for j in i..(i + BATCH).min(keys) {
            let mut v = format!("value:{j}").into_bytes();
            v.resize(VALUE_SIZE, 0);
            pipe.cmd("SET").arg(format!("key:{j}")).arg(v).ignore();
        }
        pipe.query_async::<()>(c).await?;
        i += BATCH;
    }
    Ok(())
}

async fn info_field(c: &mut redis::aio::MultiplexedConnection, field: &str) -> Result<String> {
    let info: String = redis::cmd("INFO").arg("persistence").query_async(c).await?;
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("INFO persistence has no {field}"))
}

/// BGSAVE until the save it started has finished.
async fn bgsave(c: &mut redis::aio::MultiplexedConnection) -> Result<Duration> {
    let before: u64 = info_field(c, "rdb_saves").await?.parse()?;
    let t = Instant::now();
    redis::cmd("BGSAVE")
        .arg("SCHEDULE")
        .query_async::<()>(c)
        .await?;
    loop {
        let saves: u64 = info_field(c, "rdb_saves").await?.parse()?;
        if saves > before && info_field(c, "rdb_bgsave_in_progress").await? == "0" {
            if info_field(c, "rdb_last_bgsave_status").await? != "ok" {
                bail!("raw BGSAVE failed");
            }
            return Ok(t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) async fn wait_task(client: &Client, task: i64) -> Result<()> {
    loop {
        let v = client
            .call("DescribeTaskInfo", &[("requestId", &task.to_string())])
            .await?;
        match v["data"]["status"].as_i64() {
            Some(2) => return Ok(()),
            Some(3) | Some(-1) => bail!("task {task} failed"),
            _ => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// INFO of the process behind `url` (crsd's admin user), if it answers.
async fn info_all(url: &str) -> Option<String> {
    let mut c = connect(url).await.ok()?;
    redis::cmd("INFO")
        .arg("everything")
        .query_async::<String>(&mut c)
        .await
        .ok()
}

fn info_value<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// RestoreInstance: (until every node is a new process that has loaded `keys` keys and every
/// replica's link is up, until the task ends). `nodes`: admin URL, is master.
async fn restore(
    client: &Client,
    id: &str,
    backup_id: &str,
    nodes: &[(String, bool)],
    keys: usize,
) -> Result<(Duration, Duration)> {
    let mut before = Vec::new();
    for (url, _) in nodes {
        let info = info_all(url)
            .await
            .context("node answers before the restore")?;
        before.push(info_value(&info, "run_id").unwrap_or_default().to_string());
    }
    let replicas = nodes.iter().filter(|(_, m)| !m).count().to_string();
    let t = Instant::now();
    let v = client
        .call(
            "RestoreInstance",
            &[
                ("redisId", id),
                ("password", PASSWORD),
                ("backupId", backup_id),
            ],
        )
        .await?;
    let task = v["data"]["requestId"].as_i64().context("requestId")?;
    let mut ready = vec![false; nodes.len()];
    let serving = loop {
        for (i, (url, master)) in nodes.iter().enumerate() {
            if ready[i] {
                continue;
            }
            let Some(info) = info_all(url).await else {
                continue;
            };
            let keys_there = info_value(&info, "db0")
                .and_then(|v| v.strip_prefix("keys="))
                .and_then(|v| v.split(',').next())
                .and_then(|v| v.parse::<usize>().ok());
            let linked = if *master {
                info_value(&info, "connected_slaves") == Some(replicas.as_str())
            } else {
                info_value(&info, "master_link_status") == Some("up")
                    && info_value(&info, "master_sync_in_progress") == Some("0")
            };
            ready[i] = info_value(&info, "run_id") != Some(before[i].as_str())
                && info_value(&info, "loading") == Some("0")
                && keys_there == Some(keys)
                && linked;
        }
        if ready.iter().all(|r| *r) {
            break t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    wait_task(client, task).await?;
    Ok((serving, t.elapsed()))
}

/// `count` raw redis-servers started at once, each on its own copy of the RDB, until every
/// one answers PING (after loading).
async fn raw_load(dir: &Path, rdb: &Path, round: usize, count: usize) -> Result<Duration> {
    let mut dirs = Vec::new();
    for n in 0..count {
        let d = dir.join(format!("raw-load-{round}-{n}"));
        std::fs::create_dir_all(&d)?;
        std::fs::copy(rdb, d.join("dump.rdb"))?;
        dirs.push(d);
    }
    let t = Instant::now();
    let mut children = Vec::new();
    let mut urls = Vec::new();
    for d in &dirs {
        let port = crate::free_port()?;
        children.push(
            Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                ])
                .args(["--appendonly", "no", "--dbfilename", "dump.rdb", "--dir"])
                .arg(d)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?,
        );
        urls.push(format!("redis://127.0.0.1:{port}/"));
    }
    for url in &urls {
        loop {
            if let Ok(mut c) = connect(url).await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let took = t.elapsed();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    for d in dirs {
        let _ = std::fs::remove_dir_all(&d);
    }
    Ok(took)
}

/// `curl -s -o /dev/null URL`, timed.
fn curl(url: &str) -> Result<Duration> {
    let t = Instant::now();
    let ok = Command::new("curl")
        .args(["-sf", "-o", "/dev/null", url])
        .status()?
        .success();
    if !ok {
        bail!("curl {url} failed");
    }
    Ok(t.elapsed())
}

/// Debian's nginx serving one file with sendfile, on a free port, stopped on drop.
struct Nginx {
    child: std::process::Child,
    url: String,
}

impl Nginx {
    fn start(dir: &Path, file: &Path) -> Result<Nginx> {
        let root = dir.join("nginx");
        std::fs::create_dir_all(&root)?;
        let name = file.file_name().context("file name")?.to_string_lossy();
        let port = crate::free_port()?;
        let conf = root.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                "daemon off;\nuser root;\nworker_processes 1;\npid {r}/nginx.pid;\nerror_log {r}/error.log;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; sendfile on; tcp_nopush on;\n\
                 server {{ listen 127.0.0.1:{port}; root {d}; }} }}\n",
                r = root.display(),
                d = file.parent().context("folder")?.display(),
            ),
        )?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nginx (apt-get install nginx)")?;
        let url = format!("http://127.0.0.1:{port}/{name}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("nginx did not start");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nginx { child, url })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
