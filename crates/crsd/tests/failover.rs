//! Automatic failover behind the stable address, with the real binary and real processes
//! (redis-server, redis-sentinel, haproxy): kill -9 of the master under writes with crsd up
//! and with crsd down, every node killed at once, kill -9 of a sentinel and of the proxy, a
//! password reset right after a failover, and API 3.0 ChangeReplicaToMaster (no acknowledged
//! write lost) and KillMasterGroup.
//!
//! A write counts as acknowledged when `WAIT 1` says a replica has it: that is what a failover
//! to a replica can promise. Every such write must be on the new master.

mod common;

use common::daemon::Daemon;
use common::tc3::Tc3;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET_ID: &str = "AKIDfailover0000000000000000000000";
const SECRET_KEY: &str = "failover-secret-key-0000000000000";
const PASSWORD: &str = "Failover-pass-1";

/// The value of `key` in a node's redis.conf.
fn node_conf(data: &Path, id: &str, seq: u32, key: &str) -> String {
    let conf = data
        .join("instances")
        .join(id)
        .join(format!("{id}-{seq}"))
        .join("redis.conf");
    std::fs::read_to_string(&conf)
        .unwrap_or_else(|e| panic!("{}: {e}", conf.display()))
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .unwrap_or_else(|| panic!("no {key} line in {}", conf.display()))
        .trim()
        .to_string()
}

/// The port a node listens on, from its redis.conf.
fn node_port(data: &Path, id: &str, seq: u32) -> u16 {
    node_conf(data, id, seq, "port").parse().expect("a port")
}

/// The node's redis-server pid, if it runs.
fn node_pid(data: &Path, id: &str, seq: u32) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(
        data.join("instances")
            .join(id)
            .join(format!("{id}-{seq}"))
            .join("redis.pid"),
    )
    .ok()?
    .trim()
    .parse()
    .ok()?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmd)
        .contains("redis-server")
        .then_some(pid)
}

fn kill9(pid: i32) {
    // SAFETY: kill(2) on a pid the test read from a pid file and checked just now.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// A connection that gives up fast (a client of a failing-over instance must not hang).
async fn conn(port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    conn_at("127.0.0.1", port).await
}

/// [`conn`] to another address.
async fn conn_at(host: &str, port: u16) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let url = format!("redis://:{PASSWORD}@{host}:{port}/");
    let client = redis::Client::open(url)?;
    let cfg = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Duration::from_millis(300))
        .set_response_timeout(Duration::from_millis(500));
    client
        .get_multiplexed_async_connection_with_config(&cfg)
        .await
}

/// `INFO replication`'s role of the node at `port` (as the instance's user), if it answers.
async fn role_at(port: u16) -> Option<String> {
    role_at_host("127.0.0.1", port).await
}

/// [`role_at`] at another address.
async fn role_at_host(host: &str, port: u16) -> Option<String> {
    let mut c = conn_at(host, port).await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("role:"))
        .map(|r| r.trim().to_string())
}

/// A client writing `RPUSH log <n>` every 5 ms to the stable address, then `WAIT 1`: what
/// it records as acknowledged a replica had.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    /// (sent, answered OK, n) of each write answered OK.
    ok_at: Arc<Mutex<Vec<(Instant, Instant, u64)>>>,
    /// Every connection refused or write that failed, as it failed.
    failures: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(port: u16) -> Writer {
        Writer::start_at("127.0.0.1", port)
    }

    fn start_at(host: &str, port: u16) -> Writer {
        Writer::start_with(host, port, false)
    }

    /// A writer that connects again for every write: each write goes where the address leads
    /// a new connection now.
    fn start_reconnecting(port: u16) -> Writer {
        Writer::start_with("127.0.0.1", port, true)
    }

    fn start_with(host: &str, port: u16, reconnect: bool) -> Writer {
        let host = host.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let ok_at = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, a, o, f) = (stop.clone(), acked.clone(), ok_at.clone(), failures.clone());
        let task = tokio::spawn(async move {
            let mut n = 0u64;
            let mut c = None;
            while !s.load(Ordering::SeqCst) {
                if c.is_none() {
                    c = match conn_at(&host, port).await {
                        Ok(c) => Some(c),
                        Err(e) => {
                            f.lock().unwrap().push(format!("connect: {e}"));
                            None
                        }
                    };
                }
                if let Some(con) = c.as_mut() {
                    n += 1;
                    let sent = Instant::now();
                    let pushed: redis::RedisResult<i64> =
                        redis::cmd("RPUSH").arg("log").arg(n).query_async(con).await;
                    match pushed {
                        Ok(_) => {
                            o.lock().unwrap().push((sent, Instant::now(), n));
                            let waited: redis::RedisResult<i64> =
                                redis::cmd("WAIT").arg(1).arg(200).query_async(con).await;
                            match waited {
                                Ok(r) if r >= 1 => a.lock().unwrap().push(n),
                                other => {
                                    if std::env::var_os("FAILOVER_DEBUG").is_some() {
                                        eprintln!("write {n}: WAIT answered {other:?}");
                                    }
                                }
                            }
                        }
                        Err(e) => {
                            f.lock().unwrap().push(format!("write {n}: {e}"));
                            c = None
                        }
                    }
                    if reconnect {
                        c = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Writer {
            stop,
            acked,
            ok_at,
            failures,
            task,
        }
    }

    /// How long after `t` the first write sent after `t` was answered OK (one sent before
    /// may be answered just after by the master about to die).
    fn first_ok_after(&self, t: Instant) -> Option<Duration> {
        self.ok_at
            .lock()
            .unwrap()
            .iter()
            .find(|(sent, _, _)| *sent > t)
            .map(|(_, at, _)| *at - t)
    }

    /// Every write sent after `t` and answered OK, acknowledged by a replica or not.
    fn answered_ok_after(&self, t: Instant) -> Vec<u64> {
        self.ok_at
            .lock()
            .unwrap()
            .iter()
            .filter(|(sent, _, _)| *sent > t)
            .map(|(_, _, n)| *n)
            .collect()
    }

    async fn stop(self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        let acked = self.acked.lock().unwrap().clone();
        acked
    }
}

/// Waits until a write after `t` was answered; the outage.
async fn wait_writes_back(w: &Writer, t: Instant, limit: Duration) -> Duration {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(d) = w.first_ok_after(t) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no write accepted at the stable address within {limit:?} of the kill"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// kill -9 of node 0 (the master) of `id` while a [`Writer`] writes to `host:port` every few
/// ms: waits until writes are answered again (within `limit`), then checks that every write
/// a replica acknowledged is there. Returns the outage and those writes.
async fn kill_master_under_writes(
    data: &Path,
    id: &str,
    host: &str,
    port: u16,
    limit: Duration,
) -> (Duration, Vec<u64>) {
    let w = Writer::start_at(host, port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed_at = Instant::now();
    kill9(node_pid(data, id, 0).expect("the master runs"));
    let outage = wait_writes_back(&w, killed_at, limit).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = w.stop().await;
    all_acked_at(host, port, &acked).await;
    (outage, acked)
}

/// Every acknowledged write is in the list at the stable address.
async fn all_acked_there(port: u16, acked: &[u64]) {
    all_acked_at("127.0.0.1", port, acked).await
}

/// [`all_acked_there`] at another address.
async fn all_acked_at(host: &str, port: u16, acked: &[u64]) {
    assert!(!acked.is_empty(), "the writer got acknowledgements");
    // Right after a failover the proxy may still close a session it had on its way to a
    // node that changed state: a client connects again.
    let deadline = Instant::now() + Duration::from_secs(5);
    let have: Vec<u64> = loop {
        if let Ok(mut c) = conn_at(host, port).await {
            if let Ok(have) = redis::cmd("LRANGE")
                .arg("log")
                .arg(0)
                .arg(-1)
                .query_async(&mut c)
                .await
            {
                break have;
            }
        }
        assert!(Instant::now() < deadline, "the address does not serve");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let have: std::collections::HashSet<u64> = have.into_iter().collect();
    let lost: Vec<&u64> = acked.iter().filter(|n| !have.contains(n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(20)]
    );
}

/// The roles DescribeInstanceZoneInfo lists, by GroupId (the node's sequence number), with
/// whether each node answered.
async fn zone_roles(api: &Tc3, id: &str) -> Vec<(i64, String, String)> {
    let r = api
        .ok("DescribeInstanceZoneInfo", json!({ "InstanceId": id }))
        .await;
    let mut out: Vec<(i64, String, String)> = r["ReplicaGroups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["GroupId"].as_i64().unwrap(),
                g["Role"].as_str().unwrap().to_string(),
                g["RedisNodes"][0]["Status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Waits until the database names node `seq` master and every node is online and answers
/// the role the database gives it.
async fn wait_master_recorded(api: &Tc3, data: &Path, id: &str, seq: i64, nodes: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let roles = zone_roles(api, id).await;
        let recorded = roles
            .iter()
            .all(|(g, role, status)| (role == "master") == (*g == seq) && status == "online");
        let mut answered = true;
        for n in 0..nodes {
            let want = if i64::from(n) == seq {
                "master"
            } else {
                "slave"
            };
            answered &= role_at(node_port(data, id, n)).await.as_deref() == Some(want);
        }
        if recorded && answered {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {seq} is not the recorded master with every node in its role: {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until every sentinel watches `id`, knows the two others for it and sees a replica
/// it may promote. Sentinels find
/// each other through the master (hello messages every 2 s): a master that dies before that
/// is restarted in place after `failover_grace_secs`, not failed over.
async fn wait_watched(data: &Path, id: &str) {
    let secret = std::fs::read(data.join("sentinel.secret")).expect("the sentinels' secret");
    let secret = hex::encode(secret);
    let ports: Vec<u16> = std::fs::read_dir(data.join("sentinel"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    assert_eq!(ports.len(), 3, "three sentinels");
    let deadline = Instant::now() + Duration::from_secs(20);
    'again: loop {
        assert!(
            Instant::now() < deadline,
            "the sentinels did not find each other for {id}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        for port in &ports {
            let url = format!("redis://:{secret}@127.0.0.1:{port}/");
            let Ok(mut c) = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection()
                .await
            else {
                continue 'again;
            };
            let others: redis::RedisResult<Vec<redis::Value>> = redis::cmd("SENTINEL")
                .arg("SENTINELS")
                .arg(id)
                .query_async(&mut c)
                .await;
            if others.map(|o| o.len()).unwrap_or(0) < 2 {
                continue 'again;
            }
            // And a replica it may promote (crsd raises its priority once it streams).
            let replicas: redis::RedisResult<Vec<std::collections::HashMap<String, String>>> =
                redis::cmd("SENTINEL")
                    .arg("REPLICAS")
                    .arg(id)
                    .query_async(&mut c)
                    .await;
            let eligible = replicas.is_ok_and(|rs| {
                rs.iter()
                    .any(|r| r.get("slave-priority").is_some_and(|p| p != "0"))
            });
            if !eligible {
                continue 'again;
            }
        }
        return;
    }
}

async fn start() -> (tempfile::TempDir, Daemon, Tc3) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    d.start().await;
    let api = Tc3::like(&d.client());
    (dir, d, api)
}

/// kill -9 of the master while a client writes to the stable address: Sentinel promotes the
/// replica, the address leads to it, no acknowledged write is lost, the database follows, the
/// old master comes back as a replica, and the switch is listed as a task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_fails_over_behind_the_same_address() {
    let (_dir, d, api) = start().await;
    let id = api.create(PASSWORD, 1).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    wait_watched(&d.data, &id).await;
    assert_ne!(
        port,
        node_port(&d.data, &id, 0),
        "the address is not a node's"
    );

    let (outage, _) =
        kill_master_under_writes(&d.data, &id, "127.0.0.1", port, Duration::from_secs(10)).await;
    eprintln!("writes accepted again {outage:?} after the kill");

    wait_master_recorded(&api, &d.data, &id, 1, 2).await;
    let tasks = api
        .ok(
            "DescribeTaskList",
            json!({ "InstanceId": id, "Limit": 100 }),
        )
        .await;
    assert!(
        tasks["Tasks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["TaskType"] == "switchMaster" || t["TaskName"] == "switchMaster"),
        "the failover is listed as a task: {tasks}"
    );
}

/// A master that freezes (SIGSTOP: a hung process, a stalled disk) is failed over; when it
/// thaws it still says `role:master` until Sentinel turns it into a replica, and it must take
/// no write meanwhile: every write the stable address answered OK after the failover, even one
/// no replica acknowledged, is on the new master at the end, and the old master rejoins as
/// its replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_that_thaws_after_the_failover_takes_no_write() {
    frozen_master_thaws(true).await;
}

/// [`a_frozen_master_that_thaws_after_the_failover_takes_no_write`] with crsd down from before
/// the freeze until the end: the proxy alone must keep the thawed master out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_master_that_thaws_takes_no_write_without_crsd() {
    frozen_master_thaws(false).await;
}

async fn frozen_master_thaws(crsd_up: bool) {
    let (_dir, mut d, api) = start().await;
    let id = api.create(PASSWORD, 1).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    wait_watched(&d.data, &id).await;
    let old = node_pid(&d.data, &id, 0).expect("the master runs");
    if !crsd_up {
        d.kill9();
    }

    let w = Writer::start_reconnecting(port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    // SAFETY: kill(2) on the pid the test read from the node's pid file just now.
    unsafe { libc::kill(old, libc::SIGSTOP) };
    let outage = wait_writes_back(&w, frozen_at, Duration::from_secs(10)).await;
    eprintln!("writes accepted again {outage:?} after the freeze (crsd up: {crsd_up})");
    let failed_over_at = frozen_at + outage;
    // The proxy fences the old master at the promotion: crsd's follower, or without crsd
    // Sentinel's script (`+promoted-slave`, then the script's start). A thaw before that
    // could still take writes; the test thaws once it is done.
    let fenced =
        wait_server_state(&d.data, &id, &format!("{id}-0"), |admin, _| admin & 1 != 0).await;
    eprintln!(
        "old master fenced at the proxy {:?} after writes came back",
        fenced - failed_over_at
    );
    // SAFETY: as above; the process is stopped, not gone (nothing reaps it meanwhile).
    unsafe { libc::kill(old, libc::SIGCONT) };
    // Long enough for the proxy's checks to see the thawed node answer `role:master` (it does
    // within milliseconds) and for Sentinel to demote it.
    let thawed_at = Instant::now();
    let mut claimed_master = false;
    while thawed_at.elapsed() < Duration::from_secs(4) {
        claimed_master |= role_at(node_port(&d.data, &id, 0)).await.as_deref() == Some("master");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = w.answered_ok_after(failed_over_at);
    let _ = w.stop().await;
    assert!(!answered.is_empty(), "writes went on after the failover");
    assert!(
        claimed_master,
        "the thawed master said it was master for a while"
    );
    if !crsd_up {
        d.start().await;
    }
    wait_master_recorded(&api, &d.data, &id, 1, 2).await;
    assert_eq!(
        node_pid(&d.data, &id, 0),
        Some(old),
        "the thawed master was demoted, not restarted"
    );
    // Fenced at the failover, the old master is out of maintenance again as a replica (a
    // later switch to it needs it out), and DOWN (its checks see a replica).
    wait_server_state(&d.data, &id, &format!("{id}-0"), |admin, op| {
        admin & 1 == 0 && op != 2
    })
    .await;
    // Every write answered OK after the failover, acknowledged by a replica or not, is on
    // the new master: none went to the thawed one.
    all_acked_at("127.0.0.1", port, &answered).await;
}

/// Waits (10 s at most) until the proxy's worker shows `server` of instance `id` in a state
/// `ok(admin_state, op_state)` accepts (`show servers state`: admin bit 1 is forced
/// maintenance, op state 2 is UP); when it did.
async fn wait_server_state(
    data: &Path,
    id: &str,
    server: &str,
    ok: impl Fn(u32, u32) -> bool,
) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states = proxy_cli(data, &format!("@1 show servers state {id}")).await;
        let state = states.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 6 && f[1] == id && f[3] == server {
                Some((f[6].parse::<u32>().ok()?, f[5].parse::<u32>().ok()?))
            } else {
                None
            }
        });
        if state.is_some_and(|(admin, op)| ok(admin, op)) {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "{server} of {id} never reached the state wanted: {states}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The same with crsd killed first: the failover happens without crsd; once crsd is back its
/// records match the processes and the old master rejoins as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failover_needs_no_crsd_and_crsd_follows_it_at_start() {
    let (_dir, mut d, api) = start().await;
    let id = api.create(PASSWORD, 1).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    wait_watched(&d.data, &id).await;
    d.kill9();

    let (outage, acked) =
        kill_master_under_writes(&d.data, &id, "127.0.0.1", port, Duration::from_secs(10)).await;
    eprintln!("without crsd: writes accepted again {outage:?} after the kill");
    assert_eq!(
        role_at(node_port(&d.data, &id, 1)).await.as_deref(),
        Some("master"),
        "Sentinel promoted the replica"
    );
    assert!(
        node_pid(&d.data, &id, 0).is_none(),
        "nobody restarts the old master without crsd"
    );

    d.start().await;
    wait_master_recorded(&api, &d.data, &id, 1, 2).await;
    all_acked_there(port, &acked).await;
}

/// Every node killed at once: the instance comes back with exactly one master and its data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_killed_at_once_comes_back_with_one_master_and_the_data() {
    let (_dir, d, api) = start().await;
    let id = api.create(PASSWORD, 2).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    let mut c = conn(port).await.unwrap();
    for i in 0..500 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    // WAIT within the connection's reply timeout, until both replicas have everything.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let acked: i64 = redis::cmd("WAIT")
            .arg(2)
            .arg(300)
            .query_async(&mut c)
            .await
            .unwrap();
        if acked == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not acknowledge"
        );
    }
    // The AOF is written before a reply; give its once-a-second fsync a moment anyway.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for n in 0..3 {
        kill9(node_pid(&d.data, &id, n).expect("node runs"));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut roles = Vec::new();
        for n in 0..3 {
            roles.push(role_at(node_port(&d.data, &id, n)).await);
        }
        let masters = roles
            .iter()
            .filter(|r| r.as_deref() == Some("master"))
            .count();
        let replicas = roles
            .iter()
            .filter(|r| r.as_deref() == Some("slave"))
            .count();
        if masters == 1 && replicas == 2 {
            break;
        }
        assert!(masters <= 1, "two masters at once: {roles:?}");
        assert!(
            Instant::now() < deadline,
            "not back with one master: {roles:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The proxy lets clients through once its check sees the master again (within a check
    // interval).
    let deadline = Instant::now() + Duration::from_secs(5);
    let n = loop {
        if let Ok(mut c) = conn(port).await {
            if let Ok(n) = redis::cmd("DBSIZE").query_async::<i64>(&mut c).await {
                break n;
            }
        }
        assert!(Instant::now() < deadline, "the address does not serve");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(n, 500, "the data is back");
}

/// The pid in a pid file under the data dir, if that process lives.
fn pid_in(file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(file).ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

fn pid_files(dir: &Path, name: &str) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(pid_files(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

/// kill -9 of a sentinel and of the proxy: crsd starts them again; the address serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_sentinel_and_a_killed_proxy_are_started_again() {
    let (_dir, d, api) = start().await;
    let id = api.create(PASSWORD, 1).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    wait_watched(&d.data, &id).await;

    let sentinels = pid_files(&d.data.join("sentinel"), "sentinel.pid");
    assert_eq!(sentinels.len(), 3, "three sentinels: {sentinels:?}");
    let old = pid_in(&sentinels[0]).expect("the sentinel runs");
    kill9(old);
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_in(&sentinels[0]).is_none_or(|p| p == old) {
        assert!(
            Instant::now() < deadline,
            "the sentinel was not started again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let proxy_pid = d.data.join("proxy").join("haproxy.pid");
    let old = pid_in(&proxy_pid).expect("the proxy runs");
    kill9(old);
    let killed_at = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_in(&proxy_pid).is_none_or(|p| p == old) {
        assert!(Instant::now() < deadline, "the proxy was not started again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "the proxy ran again {:?} after its kill",
        killed_at.elapsed()
    );
    loop {
        if let Ok(mut c) = conn(port).await {
            if redis::cmd("SET")
                .arg("after-proxy")
                .arg(1)
                .query_async::<()>(&mut c)
                .await
                .is_ok()
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the address does not serve again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "the address served again {:?} after the proxy's kill",
        killed_at.elapsed()
    );
}

/// A password reset right after a failover: the new password works at the address, the old
/// one does not, and the replica stays connected (replication does not use it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_right_after_a_failover_works() {
    let (_dir, d, api) = start().await;
    let id = api.create(PASSWORD, 1).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    wait_watched(&d.data, &id).await;
    kill9(node_pid(&d.data, &id, 0).expect("the master runs"));
    wait_master_recorded(&api, &d.data, &id, 1, 2).await;

    let new = "Another-pass-2";
    let r = api
        .ok("ResetPassword", json!({"InstanceId": id, "Password": new}))
        .await;
    assert_eq!(
        api.wait_task(r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    let url = format!("redis://:{new}@127.0.0.1:{port}/");
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("the new password works at the address");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut c)
        .await
        .unwrap();
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(5000)
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(acked, 1, "the replica is (still or again) connected");
    assert!(
        conn(port).await.is_err(),
        "the old password no longer works"
    );
}

/// KillMasterGroup fails the instance over (a wrong password is refused); then
/// ChangeReplicaToMaster under writes switches back with no acknowledged write lost, refusing
/// a group that is not a replica's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_fails_over_and_a_planned_switch_loses_no_write() {
    let (_dir, d, api) = start().await;
    let id = api.create(PASSWORD, 1).await;
    let port = api.describe(&id).await["Port"].as_u64().unwrap() as u16;
    wait_watched(&d.data, &id).await;

    let bad = api
        .call(
            "KillMasterGroup",
            json!({"InstanceId": id, "Password": "wrong-Pass-9"}),
        )
        .await;
    assert!(
        bad.get("Error").is_some(),
        "a wrong password is refused: {bad}"
    );
    let r = api
        .ok(
            "KillMasterGroup",
            json!({"InstanceId": id, "Password": PASSWORD}),
        )
        .await;
    assert_eq!(
        api.wait_task(r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    wait_master_recorded(&api, &d.data, &id, 1, 2).await;

    // A group that is not a replica's is refused, changing nothing.
    for group in [1, 7] {
        api.err(
            "ChangeReplicaToMaster",
            json!({"InstanceId": id, "GroupId": group}),
            "InvalidParameterValue",
        )
        .await;
    }
    let w = Writer::start(port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = api
        .ok(
            "ChangeReplicaToMaster",
            json!({"InstanceId": id, "GroupId": 0}),
        )
        .await;
    let task = r["TaskId"].as_i64().unwrap();
    assert_eq!(api.wait_task(task).await, "succeed");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let acked = w.stop().await;
    all_acked_there(port, &acked).await;
    wait_master_recorded(&api, &d.data, &id, 0, 2).await;
}

// ------------------------------------------------------------ an address of its own

/// A crsd whose instances get addresses of their own from a /28 of loopback picked at random
/// (tests run side by side).
async fn start_with_pool() -> (tempfile::TempDir, Daemon, Tc3) {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let pool = format!(
        "127.{}.{}.{}/28",
        64 + (std::process::id() % 64),
        nanos % 256,
        (nanos / 256 % 16) * 16
    );
    let conf = std::fs::read_to_string(&d.config).unwrap().replace(
        "[instances]\n",
        &format!("[instances]\naddress_pool = [\"{pool}\"]\n"),
    );
    std::fs::write(&d.config, conf).unwrap();
    d.start().await;
    let api = Tc3::like(&d.client());
    (dir, d, api)
}

/// A node's own address, from its redis.conf.
fn node_host(data: &Path, id: &str, seq: u32) -> String {
    node_conf(data, id, seq, "bind")
}

/// The pid of the redis-server that answers at `host:port`.
async fn pid_at(host: &str, port: u16) -> Option<i32> {
    let mut c = conn_at(host, port).await.ok()?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut c)
        .await
        .ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|p| p.trim().parse().ok())
}

/// Waits until the instance's address is answered by node `seq`'s own redis-server.
async fn wait_address_on(data: &Path, id: &str, host: &str, port: u16, seq: u32) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let want = node_pid(data, id, seq);
        let have = pid_at(host, port).await;
        if want.is_some() && want == have {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{host}:{port} is not served by node {seq} ({want:?}) but by {have:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// With an address pool the instance's address (the port the client asked for) is held by
/// its master's own redis-server, no proxy between; a kill -9 of the master moves it to the
/// promoted replica with no acknowledged write lost, the old master comes back as a replica
/// without it, and a planned switch moves it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_of_its_own_follows_the_master_with_no_proxy() {
    let (_dir, d, api) = start_with_pool().await;
    let r = api
        .ok(
            "CreateInstances",
            json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
                "BillingMode": 1, "ZoneId": 100002, "Password": PASSWORD,
                "RedisShardNum": 1, "RedisReplicasNum": 1, "VPort": 6390}),
        )
        .await;
    let deal = api.wait_deal(r["DealId"].as_str().unwrap()).await;
    let id = deal["InstanceIds"][0].as_str().unwrap().to_string();
    let inst = api.describe(&id).await;
    let vip = inst["WanIp"].as_str().unwrap().to_string();
    assert_eq!(inst["Port"], 6390, "the port the client asked for");
    assert!(vip.starts_with("127."), "an address of the pool: {vip}");
    let (h0, h1) = (node_host(&d.data, &id, 0), node_host(&d.data, &id, 1));
    assert!(h0 != vip && h1 != vip && h0 != h1, "{vip} {h0} {h1}");
    assert_eq!(node_port(&d.data, &id, 0), 6390);
    // No hop: the master's own process answers at the address.
    wait_address_on(&d.data, &id, &vip, 6390, 0).await;
    wait_watched(&d.data, &id).await;

    let (outage, _) =
        kill_master_under_writes(&d.data, &id, &vip, 6390, Duration::from_secs(10)).await;
    eprintln!("own address: writes accepted again {outage:?} after the kill");
    wait_address_on(&d.data, &id, &vip, 6390, 1).await;
    // The old master is back, as a replica, on its own address only.
    let deadline = Instant::now() + Duration::from_secs(30);
    while node_pid(&d.data, &id, 0).is_none() {
        assert!(Instant::now() < deadline, "the old master is not restarted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let role = role_at_host(&h0, 6390).await;
        if role.as_deref() == Some("slave") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old master is not a replica: {role:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        pid_at(&vip, 6390).await,
        node_pid(&d.data, &id, 1),
        "only the master holds the address"
    );

    // A planned switch back moves the address with it, losing no acknowledged write.
    let w = Writer::start_at(&vip, 6390);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = api
        .ok(
            "ChangeReplicaToMaster",
            json!({"InstanceId": id, "GroupId": 0}),
        )
        .await;
    assert_eq!(
        api.wait_task(r["TaskId"].as_i64().unwrap()).await,
        "succeed"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let acked = w.stop().await;
    all_acked_at(&vip, 6390, &acked).await;
    wait_address_on(&d.data, &id, &vip, 6390, 0).await;
}

/// A master with an address of its own that hangs (SIGSTOP) is failed over, and its address
/// moves to the promoted replica though the hung process cannot be asked to let it go: it is
/// killed (the kernel keeps its listening socket), and comes back as a replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_of_its_own_leaves_a_hung_master() {
    let (_dir, d, api) = start_with_pool().await;
    let id = api.create(PASSWORD, 1).await;
    let inst = api.describe(&id).await;
    let vip = inst["WanIp"].as_str().unwrap().to_string();
    let port = inst["Port"].as_u64().unwrap() as u16;
    wait_address_on(&d.data, &id, &vip, port, 0).await;
    wait_watched(&d.data, &id).await;
    let old = node_pid(&d.data, &id, 0).expect("the master runs");

    let w = Writer::start_at(&vip, port);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let frozen_at = Instant::now();
    // SAFETY: kill(2) on the pid the test read from the node's pid file just now.
    unsafe { libc::kill(old, libc::SIGSTOP) };
    let outage = wait_writes_back(&w, frozen_at, Duration::from_secs(10)).await;
    eprintln!("own address: writes accepted again {outage:?} after the master hung");
    let acked = w.stop().await;
    all_acked_at(&vip, port, &acked).await;
    wait_address_on(&d.data, &id, &vip, port, 1).await;
    // SAFETY: as above; continued in case it still runs (it was killed: then a no-op).
    unsafe { libc::kill(old, libc::SIGCONT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let role = role_at_host(&node_host(&d.data, &id, 0), port).await;
        if role.as_deref() == Some("slave") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hung master is not back as a replica: {role:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With crsd down, Sentinel's client-reconfig-script (`crsd address-hook`) moves the address
/// to the promoted replica; crsd follows at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_of_its_own_moves_without_crsd() {
    let (_dir, mut d, api) = start_with_pool().await;
    let id = api.create(PASSWORD, 1).await;
    let inst = api.describe(&id).await;
    let vip = inst["WanIp"].as_str().unwrap().to_string();
    assert_eq!(inst["Port"], 6379, "API 3.0's default VPort");
    wait_address_on(&d.data, &id, &vip, 6379, 0).await;
    wait_watched(&d.data, &id).await;
    d.kill9();

    let (outage, acked) =
        kill_master_under_writes(&d.data, &id, &vip, 6379, Duration::from_secs(15)).await;
    eprintln!("own address, crsd down: writes accepted again {outage:?} after the kill");
    wait_address_on(&d.data, &id, &vip, 6379, 1).await;
    assert!(
        node_pid(&d.data, &id, 0).is_none(),
        "nobody restarted the old master"
    );

    d.start().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let roles = zone_roles(&api, &id).await;
        if roles
            .iter()
            .any(|(g, r, s)| *g == 1 && r == "master" && s == "online")
            && node_pid(&d.data, &id, 0).is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "crsd does not follow: {roles:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    all_acked_at(&vip, 6379, &acked).await;
    wait_address_on(&d.data, &id, &vip, 6379, 1).await;
}

/// Two instances may ask for the same port: each gets an address of its own, served by its
/// own master; v2, which has no port parameter, gets Redis's 6379.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addresses_of_their_own_share_a_port_and_v2_gets_6379() {
    let (_dir, d, api) = start_with_pool().await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let r = api
            .ok(
                "CreateInstances",
                json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
                    "BillingMode": 1, "ZoneId": 100002, "Password": PASSWORD,
                    "RedisShardNum": 1, "RedisReplicasNum": 1, "VPort": 7000}),
            )
            .await;
        let deal = api.wait_deal(r["DealId"].as_str().unwrap()).await;
        let id = deal["InstanceIds"][0].as_str().unwrap().to_string();
        let inst = api.describe(&id).await;
        assert_eq!(inst["Port"], 7000);
        let vip = inst["WanIp"].as_str().unwrap().to_string();
        wait_address_on(&d.data, &id, &vip, 7000, 0).await;
        seen.push((id, vip));
    }
    assert_ne!(seen[0].1, seen[1].1, "one address each");
    // Each address leads to its own instance's data.
    for (i, (_, vip)) in seen.iter().enumerate() {
        let mut c = conn_at(vip, 7000).await.unwrap();
        let _: () = redis::cmd("SET")
            .arg("who")
            .arg(i)
            .query_async(&mut c)
            .await
            .unwrap();
    }
    for (i, (_, vip)) in seen.iter().enumerate() {
        let mut c = conn_at(vip, 7000).await.unwrap();
        let who: usize = redis::cmd("GET")
            .arg("who")
            .query_async(&mut c)
            .await
            .unwrap();
        assert_eq!(who, i);
    }

    // v2's password rule allows no '-'.
    const V2_PASSWORD: &str = "Failover123";
    let v2 = d.client();
    let created = v2.create(V2_PASSWORD, 1).await.remove(0);
    let id = created["redisId"].as_str().unwrap().to_string();
    let shown = v2.describe_one(&id).await;
    assert_eq!(shown["port"], 6379, "{shown}");
    let vip = shown["wanIp"].as_str().unwrap().to_string();
    assert!(!seen.iter().any(|(_, v)| *v == vip), "{vip} is new");
    let url = format!("redis://:{V2_PASSWORD}@{vip}:6379/");
    let mut c = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut c)
        .await
        .unwrap();
    let pid: i32 = info
        .lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(Some(pid), node_pid(&d.data, &id, 0), "the master answers");
}

/// One exchange on the proxy's master CLI (away for a moment while the master reloads).
async fn proxy_cli(data: &Path, command: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let exchange = async {
            let mut s =
                tokio::net::UnixStream::connect(data.join("proxy").join("master.sock")).await?;
            s.write_all(format!("{command}\n").as_bytes()).await?;
            s.shutdown().await?;
            let mut out = String::new();
            s.read_to_string(&mut out).await?;
            std::io::Result::Ok(out)
        };
        match exchange.await {
            Ok(out) if !out.is_empty() => return out,
            other => assert!(
                Instant::now() < deadline,
                "the proxy's master CLI does not answer: {other:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// How many times the proxy's master has reloaded (`show proc`).
async fn proxy_reloads(data: &Path) -> u64 {
    let out = proxy_cli(data, "show proc").await;
    out.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(1) == Some(&"master")).then(|| f[2].parse().ok())?
        })
        .unwrap_or_else(|| panic!("no master in {out}"))
}

/// The spare frontends in the proxy's config on disk.
fn spares_on_disk(data: &Path) -> usize {
    std::fs::read_to_string(data.join("proxy").join("haproxy.cfg"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("listen spare-"))
        .count()
}

/// Waits until the supervisor has given every taken spare its own section (the config on
/// disk has all its spares again and the running worker serves it).
async fn wait_spares_replenished(data: &Path) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let cfg =
            std::fs::read_to_string(data.join("proxy").join("haproxy.cfg")).unwrap_or_default();
        let marker = cfg
            .lines()
            .find_map(|l| l.trim().strip_prefix("description "))
            .unwrap_or("?")
            .to_string();
        let serving = proxy_cli(data, "@1 show info").await;
        if spares_on_disk(data) == 8 && serving.contains(&format!("description: {marker}")) {
            return;
        }
        assert!(Instant::now() < deadline, "the spares were not replenished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A create takes a spare frontend of the proxy: no reload happens during it, and its
/// address leads to the master as soon as the instance runs. The supervisor's reload that
/// follows (the instance's own section, a new spare) drops no connection of another instance
/// and refuses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_takes_a_spare_address_and_the_reload_after_it_drops_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    // Supervisor passes far apart: the one that replenishes the spares after a create is
    // seen, and the next create fits before the pass after it.
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(
        &d.config,
        cfg.replace("supervise_every_ms = 200", "supervise_every_ms = 3000"),
    )
    .unwrap();
    d.start().await;
    let api = Tc3::like(&d.client());
    wait_spares_replenished(&d.data).await;

    let a = api.create(PASSWORD, 1).await;
    let port_a = api.describe(&a).await["Port"].as_u64().unwrap() as u16;
    wait_spares_replenished(&d.data).await;

    // B: the reload count does not move, the address serves the master at once, through
    // the spare's section (set at run time).
    let before = proxy_reloads(&d.data).await;
    let t0 = Instant::now();
    let b = api.create(PASSWORD, 1).await;
    let create_b = t0.elapsed();
    let port_b = api.describe(&b).await["Port"].as_u64().unwrap() as u16;
    let mut c = conn(port_b)
        .await
        .expect("B's address right after the create");
    redis::cmd("SET")
        .arg("first")
        .arg(1)
        .query_async::<()>(&mut c)
        .await
        .expect("B's address leads to the master right after the create");
    assert_eq!(
        proxy_reloads(&d.data).await,
        before,
        "the proxy reloaded during the create"
    );
    let spare = proxy_cli(&d.data, &format!("@1 show servers state spare-{port_b}")).await;
    assert!(
        spare.contains(&format!(" {} ", node_port(&d.data, &b, 0))),
        "B is not served by the spare on its port: {spare}"
    );
    assert_eq!(spares_on_disk(&d.data), 7);

    // The reload after it: connections on A stay open, writes to A and B go on.
    let mut kept = conn(port_a).await.expect("A");
    let w = Writer::start(port_a);
    let wb = Writer::start(port_b);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let reload_seen_from = Instant::now();
    wait_spares_replenished(&d.data).await;
    assert_eq!(proxy_reloads(&d.data).await, before + 1);
    let reloaded = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Neither connection was dropped or refused (a slow write on a loaded machine is no
    // failure), and writes went on after the reload.
    let failures = |w: &Writer| w.failures.lock().unwrap().clone();
    let (failed_a, failed_b) = (failures(&w), failures(&wb));
    let after = |w: &Writer| {
        w.ok_at
            .lock()
            .unwrap()
            .iter()
            .any(|(sent, _, _)| *sent > reloaded)
    };
    let (went_on_a, went_on_b) = (after(&w), after(&wb));
    let (acked_a, acked_b) = (w.stop().await, wb.stop().await);
    assert!(!acked_a.is_empty() && !acked_b.is_empty());
    assert!(
        failed_a.is_empty() && failed_b.is_empty(),
        "writes failed around the reload: A {failed_a:?}, B {failed_b:?}"
    );
    assert!(went_on_a && went_on_b, "writes stopped after the reload");
    redis::cmd("PING")
        .query_async::<()>(&mut kept)
        .await
        .expect("the reload dropped a connection on A");
    redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query_async::<()>(&mut c)
        .await
        .expect("the reload dropped B's connection");
    eprintln!(
        "create B {create_b:?}; the reload came {:?} after the writers started",
        reload_seen_from.elapsed()
    );
}
