//! Backup and restore faults with the real binary: kill -9 of crsd while a backup or a restore
//! runs (then a restart), kill -9 of the replica's redis-server during a backup, and a replica
//! that lags its master when a backup is requested. After each fault: the task ends in a
//! defined state, only whole backups are listed (file present, SHA-256 as recorded,
//! redis-check-rdb happy, the same bytes through the download URL), the backup store holds
//! nothing else, and the instance serves exactly one consistent data set.

mod common;

use common::daemon::Daemon;
use common::{free_port, redis_conn, V2Client};
use redis::aio::MultiplexedConnection;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET_ID: &str = "AKIDfaultsBackupSecretId0000000001";
const SECRET_KEY: &str = "faultsBackupSecretKey00000000001";
const PASSWORD: &str = "Faults2024(ok";
/// Keys of the big instance: 300k x 500 B makes a backup take a noticeable time.
const BIG_KEYS: usize = 300_000;
const VALUE_LEN: usize = 500;

// ---------------- the real binary ----------------

fn pid_of(d: &Daemon, id: &str, role: &str) -> i32 {
    let p = d.node_dir(id, role).join("redis.pid");
    std::fs::read_to_string(&p).unwrap().trim().parse().unwrap()
}

fn replica_port(d: &Daemon, id: &str) -> u16 {
    let conf = std::fs::read_to_string(d.node_dir(id, "replica").join("redis.conf")).unwrap();
    conf.lines()
        .find_map(|l| l.strip_prefix("port "))
        .and_then(|p| p.trim().parse().ok())
        .expect("the replica's redis.conf names its port")
}

fn names_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every regular file under `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------- instance data ----------------

fn key(i: usize) -> String {
    format!("key:{i:06}")
}

fn value(i: usize, tag: &str) -> String {
    let mut v = format!("{tag}:{i:08}:");
    while v.len() < VALUE_LEN {
        v.push(char::from(b'a' + (v.len() % 26) as u8));
    }
    v
}

/// SETs key(0..n) = value(i, tag), pipelined.
async fn fill(conn: &mut MultiplexedConnection, range: std::ops::Range<usize>, tag: &str) {
    let mut start = range.start;
    while start < range.end {
        let end = (start + 5000).min(range.end);
        let mut p = redis::pipe();
        for i in start..end {
            p.cmd("SET").arg(key(i)).arg(value(i, tag)).ignore();
        }
        p.query_async::<()>(conn).await.unwrap();
        start = end;
    }
}

/// Asserts that the node holds exactly key(0..n) = value(i, tag).
async fn assert_holds(conn: &mut MultiplexedConnection, n: usize, tag: &str, what: &str) {
    if let Err(e) = holds(conn, n, tag).await {
        panic!("{what}: {e}");
    }
}

/// Whether the node holds exactly key(0..n) = value(i, tag); the first difference if not.
async fn holds(conn: &mut MultiplexedConnection, n: usize, tag: &str) -> Result<(), String> {
    let size: usize = redis::cmd("DBSIZE")
        .query_async(conn)
        .await
        .map_err(|e| format!("DBSIZE: {e}"))?;
    if size != n {
        return Err(format!("DBSIZE {size}, expected {n}"));
    }
    let mut start = 0;
    while start < n {
        let end = (start + 2000).min(n);
        let keys: Vec<String> = (start..end).map(key).collect();
        let got: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(conn)
            .await
            .map_err(|e| format!("MGET: {e}"))?;
        for (i, g) in (start..end).zip(got) {
            if g.as_deref() != Some(value(i, tag).as_str()) {
                return Err(format!(
                    "{}: {:?}",
                    key(i),
                    g.map(|v| v[..20.min(v.len())].to_string())
                ));
            }
        }
        start = end;
    }
    Ok(())
}

/// Waits until the replica is in sync with its master (link up, no sync under way) and
/// holds exactly key(0..n) = value(i, tag).
async fn wait_replica_holds(host: &str, port: u16, n: usize, tag: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let last;
        match redis_conn(host, port, PASSWORD).await {
            Ok(mut r) => {
                let info: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut r)
                    .await
                    .unwrap_or_default();
                if info.contains("master_link_status:up")
                    && info.contains("master_sync_in_progress:0")
                {
                    match holds(&mut r, n, tag).await {
                        Ok(()) => return,
                        Err(e) => last = e,
                    }
                } else {
                    last = "not in sync".into();
                }
            }
            Err(e) => last = e.to_string(),
        }
        assert!(
            Instant::now() < deadline,
            "the replica did not come back in sync: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every key with its type and value.
async fn dump(conn: &mut MultiplexedConnection) -> BTreeMap<String, String> {
    try_dump(conn).await.unwrap()
}

/// [`dump`], or the first error (e.g. LOADING while a replica syncs).
async fn try_dump(
    conn: &mut MultiplexedConnection,
) -> redis::RedisResult<BTreeMap<String, String>> {
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(conn).await?;
    let mut types = redis::pipe();
    for k in &keys {
        types.cmd("TYPE").arg(k);
    }
    let types: Vec<String> = types.query_async(conn).await?;
    let mut out = BTreeMap::new();
    let strings: Vec<&String> = keys
        .iter()
        .zip(&types)
        .filter(|(_, t)| t.as_str() == "string")
        .map(|(k, _)| k)
        .collect();
    for chunk in strings.chunks(2000) {
        let vals: Vec<String> = redis::cmd("MGET").arg(chunk).query_async(conn).await?;
        for (k, v) in chunk.iter().zip(vals) {
            out.insert(k.to_string(), format!("string:{v}"));
        }
    }
    for (k, t) in keys.iter().zip(&types) {
        let v = match t.as_str() {
            "string" => continue,
            "hash" => format!(
                "{:?}",
                redis::cmd("HGETALL")
                    .arg(k)
                    .query_async::<BTreeMap<String, String>>(conn)
                    .await?
            ),
            "list" => format!(
                "{:?}",
                redis::cmd("LRANGE")
                    .arg(k)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(conn)
                    .await?
            ),
            other => panic!("unexpected type {other} of {k}"),
        };
        out.insert(k.clone(), format!("{t}:{v}"));
    }
    Ok(out)
}

// ---------------- the API ----------------

async fn create_one(c: &V2Client) -> (String, String, u16) {
    let inst = c.create(PASSWORD, 1).await.remove(0);
    (
        inst["redisId"].as_str().unwrap().to_string(),
        inst["wanIp"].as_str().unwrap().to_string(),
        inst["port"].as_u64().unwrap() as u16,
    )
}

async fn request_backup(c: &V2Client, id: &str, remark: &str) -> i64 {
    let v = c
        .ok(
            "ManualBackupInstance",
            &[("redisId", id), ("remark", remark)],
        )
        .await;
    v["data"]["requestId"].as_i64().unwrap()
}

async fn backups(c: &V2Client, id: &str) -> Vec<Value> {
    let v = c
        .ok(
            "GetRedisBackupList",
            &[("redisId", id), ("limit", "100"), ("offset", "0")],
        )
        .await;
    let set = v["data"]["redisBackupSet"].as_array().unwrap().clone();
    assert_eq!(v["totalCount"].as_u64(), Some(set.len() as u64), "{v}");
    set
}

/// DescribeTaskInfo until the task ends, with a longer patience than the harness (a resumed
/// backup of the big instance snapshots again). Returns the status.
async fn wait_task(c: &V2Client, id: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let v = c
            .ok("DescribeTaskInfo", &[("requestId", &id.to_string())])
            .await;
        let s = v["data"]["status"].as_i64().unwrap();
        if s == 2 || s == 3 || s == -1 {
            return s;
        }
        assert!(Instant::now() < deadline, "task {id} did not end: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the instance is running and idle again (the task's end unlocks it).
async fn wait_running(c: &V2Client, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let inst = c.describe_one(id).await;
        if inst["status"] == 2 {
            return;
        }
        assert!(Instant::now() < deadline, "instance not running: {inst}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------- what a listed backup must be ----------------

/// Checks that every listed backup is whole and that the store holds nothing else: the file
/// `<backups>/<instance>/<backupId>.rdb` exists, its size and SHA-256 are the record's (read
/// from crsd's SQLite file), `redis-check-rdb` accepts it, the download URL serves the same
/// bytes, and no other file (temporary, partial, unlisted) is anywhere under the store.
/// Returns the listed backups' ids.
async fn assert_only_whole_backups(d: &Daemon, c: &V2Client, id: &str) -> Vec<String> {
    let listed = backups(c, id).await;
    let store = crsd_store::Store::open(&d.data.join("crsd.db"))
        .await
        .expect("crsd's database opens");
    let mut ids = Vec::new();
    let mut expected_files = BTreeSet::new();
    for b in &listed {
        let bid = b["backupId"].as_str().unwrap().to_string();
        let record = store
            .backup(&bid)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("listed backup {bid} has a record"));
        let rel = format!("{id}/{bid}.rdb");
        let path = d.store_dir().join(&rel);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("listed backup {bid}: {}: {e}", path.display()));
        assert_eq!(bytes.len() as u64, record.size, "{bid}: size as recorded");
        assert_eq!(
            sha256_hex(&bytes),
            record.sha256,
            "{bid}: SHA-256 as recorded"
        );
        assert!(bytes.starts_with(b"REDIS"), "{bid}: an RDB");
        let check = Command::new("redis-check-rdb").arg(&path).output().unwrap();
        assert!(
            check.status.success(),
            "{bid}: redis-check-rdb: {}{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        let urls = c
            .ok(
                "GetBackupDownloadUrl",
                &[("redisId", id), ("backupId", &bid)],
            )
            .await;
        let url = urls["data"]["intranet"].as_str().unwrap();
        let resp = reqwest::get(url).await.unwrap();
        assert_eq!(resp.status(), 200, "{bid}: download");
        let got = resp.bytes().await.unwrap();
        assert_eq!(got.len(), bytes.len(), "{bid}: download length");
        assert_eq!(sha256_hex(&got), record.sha256, "{bid}: downloaded SHA-256");
        expected_files.insert(rel);
        ids.push(bid);
    }
    store.close().await;
    assert_eq!(
        files_under(&d.store_dir()),
        expected_files,
        "the backup store holds the listed backups and nothing else"
    );
    ids
}

/// A redis-server of the test's own, on a copy of an RDB file: what the backup holds.
struct Scratch {
    child: Child,
    port: u16,
}

impl Scratch {
    async fn load(root: &Path, rdb: &Path) -> Scratch {
        let dir = root.join(format!("scratch-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(rdb, dir.join("b.rdb")).unwrap();
        let port = free_port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .args(["--dbfilename", "b.rdb", "--appendonly", "no", "--save", ""])
            .args(["--protected-mode", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        // Killed and waited for on drop, even if it never answers.
        let scratch = Scratch { child, port };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut c) = Scratch::conn_at(port).await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return scratch;
                }
            }
            assert!(
                Instant::now() < deadline,
                "scratch redis-server did not load"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn conn_at(port: u16) -> redis::RedisResult<MultiplexedConnection> {
        redis::Client::open(format!("redis://127.0.0.1:{port}/"))?
            .get_multiplexed_async_connection()
            .await
    }

    async fn conn(&self) -> MultiplexedConnection {
        Scratch::conn_at(self.port).await.unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------- kill points ----------------

#[derive(Debug, Clone, Copy)]
enum BackupKill {
    /// The replica's background save is writing its temp-<pid>.rdb.
    SaveRunning,
    /// The snapshot is being taken into the store (a `.part` file in `<store>/.tmp`).
    Ingesting,
    /// The backup's file has just appeared under its final name.
    FileInPlace,
    /// This fraction of a measured backup's duration after the request.
    After(f64),
}

/// Polls every millisecond until the kill point is reached; false if the task ended first.
async fn wait_for_backup_point(
    d: &Daemon,
    c: &V2Client,
    id: &str,
    task: i64,
    point: BackupKill,
    measured: Duration,
    asked: Instant,
) -> bool {
    let replica = d.node_dir(id, "replica");
    let tmp = d.store_dir().join(".tmp");
    let final_dir = d.store_dir().join(id);
    let files_before = names_in(&final_dir).len();
    let deadline = Instant::now() + measured * 4 + Duration::from_secs(30);
    let mut polls = 0u64;
    loop {
        let reached = match point {
            BackupKill::SaveRunning => names_in(&replica)
                .iter()
                .any(|n| n.starts_with("temp-") && n.ends_with(".rdb")),
            BackupKill::Ingesting => names_in(&tmp).iter().any(|n| n.ends_with(".part")),
            BackupKill::FileInPlace => names_in(&final_dir).len() > files_before,
            BackupKill::After(f) => asked.elapsed() >= measured.mul_f64(f),
        };
        if reached {
            return true;
        }
        polls += 1;
        if polls.is_multiple_of(200) {
            let v = c
                .ok("DescribeTaskInfo", &[("requestId", &task.to_string())])
                .await;
            if matches!(v["data"]["status"].as_i64(), Some(2 | 3 | -1)) {
                return false;
            }
        }
        assert!(Instant::now() < deadline, "{point:?} never reached");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------- the tests ----------------

/// 1a. kill -9 of crsd at several moments of a backup of a big instance; after the restart
/// the task ends, only whole backups are listed, nothing else is in the store, and every
/// listed backup holds every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crsd_killed_during_a_backup_leaves_only_whole_backups() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let (id, host, port) = create_one(&c).await;
    let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
    let t = Instant::now();
    fill(&mut conn, 0..BIG_KEYS, "v").await;
    eprintln!("filled {BIG_KEYS} keys in {:?}", t.elapsed());

    // A backup without faults, to measure.
    let asked = Instant::now();
    let task = request_backup(&c, &id, "measure").await;
    assert_eq!(wait_task(&c, task).await, 2);
    let measured = asked.elapsed();
    eprintln!("a backup takes {measured:?}");
    let mut successes = 1;

    for point in [
        BackupKill::SaveRunning,
        BackupKill::Ingesting,
        BackupKill::FileInPlace,
        BackupKill::After(0.5),
        BackupKill::After(0.9),
    ] {
        let asked = Instant::now();
        let task = request_backup(&c, &id, &format!("{point:?}")).await;
        let reached = wait_for_backup_point(&d, &c, &id, task, point, measured, asked).await;
        d.kill9();
        let killed_after = asked.elapsed();
        d.start().await;
        let status = wait_task(&c, task).await;
        eprintln!("kill at {point:?} (reached {reached}, {killed_after:?}): task {status}");
        assert!(
            status == 2 || status == 3,
            "{point:?}: task status {status}"
        );
        if status == 2 {
            successes += 1;
        }
        wait_running(&c, &id).await;
        let ids = assert_only_whole_backups(&d, &c, &id).await;
        assert_eq!(
            ids.len(),
            successes,
            "{point:?}: one backup per successful task"
        );
        let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
        assert_holds(&mut conn, BIG_KEYS, "v", &format!("master after {point:?}")).await;
    }

    // Every listed backup holds every key (loaded into a redis-server of the test's own).
    for b in backups(&c, &id).await {
        let bid = b["backupId"].as_str().unwrap();
        assert_eq!(
            (b["status"].as_i64(), b["locked"].as_i64()),
            (Some(2), Some(0))
        );
        let rdb = d.store_dir().join(&id).join(format!("{bid}.rdb"));
        let scratch = Scratch::load(dir.path(), &rdb).await;
        assert_holds(
            &mut scratch.conn().await,
            BIG_KEYS,
            "v",
            &format!("backup {bid}"),
        )
        .await;
    }
}

#[derive(Debug, Clone, Copy)]
enum RestoreKill {
    /// This many milliseconds after RestoreInstance answered.
    Delay(u64),
    /// The backup is staged next to the master's data (`appendonlydir.restore`).
    Staged,
    /// The master's own data was moved aside (`appendonlydir.before-restore`).
    Swapped,
    /// The master runs again (a new pid) on the swapped-in data.
    MasterStarted,
    /// The replica runs again (a new pid) and syncs from scratch.
    ReplicaStarted,
}

/// State A: 20k strings, a hash and a list.
async fn write_state_a(conn: &mut MultiplexedConnection) {
    fill(conn, 0..20_000, "a").await;
    redis::cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query_async::<()>(conn)
        .await
        .unwrap();
    redis::cmd("RPUSH")
        .arg("l")
        .arg("x")
        .arg("y")
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// State B from state A (or from B: idempotent): deletions, changes, additions.
async fn change_to_state_b(conn: &mut MultiplexedConnection) {
    let mut p = redis::pipe();
    for i in 0..1000 {
        p.cmd("DEL").arg(key(i)).ignore();
    }
    p.query_async::<()>(conn).await.unwrap();
    fill(conn, 1000..3000, "b").await;
    fill(conn, 20_000..21_000, "b").await;
    redis::cmd("HSET")
        .arg("h")
        .arg("c")
        .arg("3")
        .query_async::<()>(conn)
        .await
        .unwrap();
    redis::cmd("DEL")
        .arg("l")
        .query_async::<()>(conn)
        .await
        .unwrap();
}

/// 1b. kill -9 of crsd at several moments of a restore; after the restart the task ends,
/// the master holds exactly state A or exactly state B (A if the task succeeded), the
/// replica follows, the instance runs and the backup is unlocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crsd_killed_during_a_restore_leaves_one_whole_data_set() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let (id, host, port) = create_one(&c).await;
    let mut m = redis_conn(&host, port, PASSWORD).await.unwrap();
    write_state_a(&mut m).await;
    let state_a = dump(&mut m).await;
    let task = request_backup(&c, &id, "state A").await;
    assert_eq!(wait_task(&c, task).await, 2);
    let backup_id = backups(&c, &id).await[0]["backupId"]
        .as_str()
        .unwrap()
        .to_string();
    change_to_state_b(&mut m).await;
    let state_b = dump(&mut m).await;
    assert_ne!(state_a, state_b);

    // A restore without faults, to see how long one takes.
    let restore = |c: V2Client, id: String, backup_id: String| async move {
        let v = c
            .ok(
                "RestoreInstance",
                &[
                    ("redisId", &id),
                    ("password", PASSWORD),
                    ("backupId", &backup_id),
                ],
            )
            .await;
        v["data"]["requestId"].as_i64().unwrap()
    };
    let t = Instant::now();
    let task = restore(c.clone(), id.clone(), backup_id.clone()).await;
    assert_eq!(wait_task(&c, task).await, 2);
    eprintln!("a restore takes {:?}", t.elapsed());
    let mut m = redis_conn(&host, port, PASSWORD).await.unwrap();
    assert_eq!(dump(&mut m).await, state_a, "restored without faults");

    let master_dir = d.node_dir(&id, "master");
    for point in [
        RestoreKill::Delay(0),
        RestoreKill::Delay(50),
        RestoreKill::Delay(100),
        RestoreKill::Delay(150),
        RestoreKill::Delay(200),
        RestoreKill::Staged,
        RestoreKill::Swapped,
        RestoreKill::MasterStarted,
        RestoreKill::ReplicaStarted,
    ] {
        wait_running(&c, &id).await;
        let mut m = redis_conn(&host, port, PASSWORD).await.unwrap();
        change_to_state_b(&mut m).await;
        assert_eq!(
            dump(&mut m).await,
            state_b,
            "{point:?}: state B before the restore"
        );
        let master_pid = pid_of(&d, &id, "master");
        let replica_pid = pid_of(&d, &id, "replica");
        let replica_dir = d.node_dir(&id, "replica");

        let task = restore(c.clone(), id.clone(), backup_id.clone()).await;
        let asked = Instant::now();
        let deadline = asked + Duration::from_secs(60);
        loop {
            let reached = match point {
                RestoreKill::Delay(ms) => asked.elapsed() >= Duration::from_millis(ms),
                RestoreKill::Staged => master_dir.join("appendonlydir.restore").exists(),
                RestoreKill::Swapped => master_dir.join("appendonlydir.before-restore").exists(),
                RestoreKill::MasterStarted => std::fs::read_to_string(master_dir.join("redis.pid"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .is_some_and(|p| p != master_pid),
                RestoreKill::ReplicaStarted => {
                    std::fs::read_to_string(replica_dir.join("redis.pid"))
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        .is_some_and(|p| p != replica_pid)
                }
            };
            if reached {
                break;
            }
            assert!(Instant::now() < deadline, "{point:?} never reached");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        d.kill9();
        let killed_after = asked.elapsed();
        d.start().await;
        let status = wait_task(&c, task).await;
        eprintln!("kill at {point:?} ({killed_after:?}): task {status}");
        assert!(
            status == 2 || status == 3,
            "{point:?}: task status {status}"
        );
        wait_running(&c, &id).await;

        let mut m = redis_conn(&host, port, PASSWORD).await.unwrap();
        let now = dump(&mut m).await;
        if status == 2 {
            assert!(
                now == state_a,
                "{point:?}: task succeeded but the master is not state A ({} keys)",
                now.len()
            );
        } else {
            assert!(
                now == state_b,
                "{point:?}: task failed but the master is not state B ({} keys)",
                now.len()
            );
        }
        // The replica follows the master.
        let rport = replica_port(&d, &id);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let same = match redis_conn(&host, rport, PASSWORD).await {
                Ok(mut r) => try_dump(&mut r).await.is_ok_and(|r| r == now),
                Err(_) => false,
            };
            if same {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{point:?}: the replica does not follow the master"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(c.describe_one(&id).await["status"], 2);
        let list = backups(&c, &id).await;
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0]["status"].as_i64(), list[0]["locked"].as_i64()),
            (Some(2), Some(0)),
            "{point:?}: backup unlocked: {}",
            list[0]
        );
        // The restore's folders are gone: finished or rolled back.
        let leftovers: Vec<String> = names_in(&master_dir)
            .into_iter()
            .filter(|n| n.starts_with("appendonlydir."))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{point:?}: left in the master's folder: {leftovers:?}"
        );
    }
    assert_only_whole_backups(&d, &c, &id).await;
}

/// 1c. kill -9 of the replica's redis-server while it saves a backup: the task fails or
/// succeeds, no partial backup is listed, the supervisor brings the replica back and the
/// data is intact on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_killed_during_a_backup_leaves_no_partial_backup() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let (id, host, port) = create_one(&c).await;
    let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
    fill(&mut conn, 0..BIG_KEYS, "v").await;

    let replica_pid = pid_of(&d, &id, "replica");
    let asked = Instant::now();
    let task = request_backup(&c, &id, "replica killed").await;
    let reached = wait_for_backup_point(
        &d,
        &c,
        &id,
        task,
        BackupKill::SaveRunning,
        Duration::from_secs(30),
        asked,
    )
    .await;
    assert!(reached, "the replica's save was seen running");
    Command::new("kill")
        .args(["-9", &replica_pid.to_string()])
        .status()
        .unwrap();
    let status = wait_task(&c, task).await;
    eprintln!("replica killed after {:?}: task {status}", asked.elapsed());
    assert!(status == 2 || status == 3, "task status {status}");
    wait_running(&c, &id).await;
    let ids = assert_only_whole_backups(&d, &c, &id).await;
    assert_eq!(ids.len(), usize::from(status == 2));

    // The supervisor brought the replica back; it follows the master with every key.
    let rport = replica_port(&d, &id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(d.node_dir(&id, "replica").join("redis.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_none_or(|p| p == replica_pid)
    {
        assert!(Instant::now() < deadline, "the replica was not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_replica_holds(&host, rport, BIG_KEYS, "v").await;
    let mut conn = redis_conn(&host, port, PASSWORD).await.unwrap();
    assert_holds(&mut conn, BIG_KEYS, "v", "master").await;

    // And the next backup works and holds every key.
    let task = request_backup(&c, &id, "after").await;
    assert_eq!(wait_task(&c, task).await, 2);
    let ids = assert_only_whole_backups(&d, &c, &id).await;
    let newest = d.store_dir().join(&id).join(format!("{}.rdb", ids[0]));
    let scratch = Scratch::load(dir.path(), &newest).await;
    assert_holds(
        &mut scratch.conn().await,
        BIG_KEYS,
        "v",
        "backup after the fault",
    )
    .await;
}

/// A replica that lags its master when the backup is asked for: the backup still holds every
/// write the master acknowledged before the request (the replication barrier). The replica
/// is kept busy by a read-only script of the customer's while ~5 MB of writes go to the
/// master, so those writes wait in the replication stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_holds_every_write_acknowledged_before_the_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let c = d.client();
    let (id, host, port) = create_one(&c).await;
    let rport = replica_port(&d, &id);
    let mut m = redis_conn(&host, port, PASSWORD).await.unwrap();
    fill(&mut m, 0..1000, "old").await;

    // Keep the replica busy for 0.8 s (crsd's admin connections wait 1 s for a handshake).
    let mut r = redis_conn(&host, rport, PASSWORD).await.unwrap();
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL_RO")
            .arg(
                "local t0 = redis.call('TIME') local n = 0 \
                 while true do n = n + 1 \
                   if n % 10000 == 0 then local t = redis.call('TIME') \
                     if (t[1] - t0[1]) * 1000000 + (t[2] - t0[2]) > 800000 then return n end \
                   end end",
            )
            .arg(0)
            .query_async::<i64>(&mut r)
            .await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    const N: usize = 10_000;
    fill(&mut m, 0..N, "new").await; // acknowledged by the master
    let task = request_backup(&c, &id, "lagging replica").await;
    assert!(busy.await.unwrap().is_ok(), "the script ran");
    assert_eq!(wait_task(&c, task).await, 2);
    let ids = assert_only_whole_backups(&d, &c, &id).await;
    let rdb = d.store_dir().join(&id).join(format!("{}.rdb", ids[0]));
    let scratch = Scratch::load(dir.path(), &rdb).await;
    assert_holds(&mut scratch.conn().await, N, "new", "the backup").await;
}
