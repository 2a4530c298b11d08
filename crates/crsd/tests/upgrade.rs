//! Upgrade in place: a data folder and the processes made by the PREVIOUS release of crsd (the
//! commit in tests/upgrade/PREVIOUS, built by scripts/upgrade-test.sh and passed in
//! `CRSD_PREVIOUS_BIN`) are adopted by this tree's crsd: no redis-server, sentinel or proxy is
//! restarted, every instance serves its data at the address the API gave before,
//! without a failed connection while crsd is replaced, replicates, is still watched by every sentinel,
//! and takes new change tasks; an adopted master killed -9 comes back with its data, and an
//! adopted instance can be stopped and started again (the new crsd recognises the processes as
//! its own).
//!
//! The previous crsd makes instances through the public APIs (v2 CreateRedis and API 3.0
//! CreateInstances, signed as the SDKs sign), a parameter change and a backup, so its data
//! folder holds those rows; then it is stopped (kill -9 in one test, SIGTERM in the other) and
//! the new crsd starts on the same data dir and config.
//!
//! Nodes are found without knowing the data folder's layout (which an upgrade may migrate):
//! each instance's master by the address the API gives, its replicas from the master's `INFO
//! replication`, and each node's identity from its own `INFO server` (`process_id` and
//! `run_id`, new at every start of redis-server). Every redis-server whose command line names
//! the data dir must be one of those nodes, before and after. The sentinels are found by the
//! ports the config names, logged in with the secret crsd keeps in `<data>/sentinel.secret`
//! (the one file of the data folder this test reads), and identified the same way; the proxy
//! is the one haproxy master process whose command line names the data dir (its workers are
//! replaced at every reload, the master stays).

mod common;

use common::daemon::Daemon;
use common::{redis_conn, V2Client};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The path of the previous release's `crsd`, set by scripts/upgrade-test.sh.
const PREVIOUS_BIN: &str = "CRSD_PREVIOUS_BIN";
const SECRET_ID: &str = "AKIDupgradeTestSecretId00000000001";
const SECRET_KEY: &str = "upgradeTestSecretKey000000000001";
/// v2's password rule and API 3.0's: one password satisfies both.
const PASSWORD: &str = "Upgrade2024(ok";
/// Keys written to each instance before the upgrade.
const KEYS: usize = 500;

#[derive(Clone, Copy, Debug)]
enum Stop {
    /// kill -9: what a crash or an impatient operator leaves behind.
    Kill9,
    /// SIGTERM: the orderly stop of a package upgrade.
    Term,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the previous release's binary: scripts/upgrade-test.sh builds it and runs this"]
async fn the_new_crsd_adopts_what_a_killed_previous_release_left_running() {
    upgrade_in_place(Stop::Kill9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the previous release's binary: scripts/upgrade-test.sh builds it and runs this"]
async fn the_new_crsd_adopts_what_a_stopped_previous_release_left_running() {
    upgrade_in_place(Stop::Term).await;
}

/// The previous release is given the test config without what it does not know: a section
/// whole (here `[metrics]`), a key (here `instances.address_pool`), nothing of the sections
/// after them.
#[test]
fn the_previous_release_gets_no_section_it_does_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    let config = std::fs::read_to_string(&d.config).unwrap();
    assert!(config.contains("[metrics]"), "{config}");
    let config = format!("{config}[backups]\ndaily_at = \"03:00\"\n");
    let config = config.replace("[instances]\n", "[instances]\naddress_pool = []\n");
    let old = without(&config, &[("instances", "address_pool")], &["metrics"]);
    assert!(
        !old.contains("[metrics]") && !old.contains("listen") && !old.contains("address_pool"),
        "{old}"
    );
    for kept in [
        "[instances]",
        "port_min",
        "[ha]",
        "sentinel_ports",
        "[backups]",
        "daily_at",
    ] {
        assert!(old.contains(kept), "{kept} is missing in {old}");
    }
}

/// The previous release's binary; a run without it fails (it must not pass unnoticed).
fn previous_binary() -> PathBuf {
    let Some(path) = std::env::var_os(PREVIOUS_BIN) else {
        panic!(
            "{PREVIOUS_BIN} is not set: this test needs the previous release's crsd. \
             Run scripts/upgrade-test.sh, which builds it and runs this test with it."
        );
    };
    let path = PathBuf::from(path);
    let meta = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{PREVIOUS_BIN}={}: {e}", path.display()));
    assert!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 != 0,
        "{PREVIOUS_BIN}={} is not executable",
        path.display()
    );
    path
}

/// An instance as its user reaches it.
#[derive(Clone, Debug)]
struct Inst {
    id: String,
    host: String,
    port: u16,
    /// Which API made it (for messages).
    made_by: &'static str,
}

async fn upgrade_in_place(stop: Stop) {
    let previous = previous_binary();
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::new(dir.path(), SECRET_ID, SECRET_KEY);
    // The daily automatic backups half a day away: none starts during the test.
    let daily_at = (chrono::Utc::now() + chrono::Duration::hours(12)).format("%H:%M");
    let config = std::fs::read_to_string(&d.config).unwrap();
    let config = format!("{config}[backups]\ndaily_at = \"{daily_at}\"\n");
    // The previous release refuses keys it does not know: those added since are left out of
    // its config and given to the new crsd.
    std::fs::write(&d.config, without_newer_keys(&config)).unwrap();
    let ha = HaSetup::read(&config, &d.data);
    // The new crsd watches with another Sentinel setting than the previous one did, as after
    // a release that changes a default (`down_after_ms` went from 1500 to 500 for a config
    // that names none): the watches it adopts take its settings.
    let (down_before, down_after) = ("1500", "2000");
    let new_config = config.replace(
        &format!("down_after_ms = {down_before}\n"),
        &format!("down_after_ms = {down_after}\n"),
    );
    assert_ne!(
        new_config, config,
        "the test config sets down_after_ms = {down_before}"
    );
    d.binary = previous.clone();
    d.start().await;
    let v2 = d.client();
    let api3 = Tc3Client::new(&d);

    // ---- the previous release makes instances, a parameter change and a backup.
    let a = v2.create(PASSWORD, 1).await.remove(0);
    let a = Inst {
        id: a["redisId"].as_str().unwrap().to_string(),
        host: a["wanIp"].as_str().unwrap().to_string(),
        port: a["port"].as_u64().unwrap() as u16,
        made_by: "v2 CreateRedis",
    };
    let r = api3
        .ok(
            "CreateInstances",
            json!({"TypeId": 17, "MemSize": 1024, "GoodsNum": 1, "Period": 1,
                "BillingMode": 1, "ZoneId": 100002, "Password": PASSWORD}),
        )
        .await;
    let deal = r["DealId"].as_str().unwrap().to_string();
    let b_id = v2.wait_deal(&deal).await.remove(0);
    let b = api3
        .ok("DescribeInstances", json!({ "InstanceId": b_id }))
        .await["InstanceSet"][0]
        .clone();
    let b = Inst {
        id: b_id,
        host: b["WanIp"].as_str().unwrap().to_string(),
        port: b["Port"].as_u64().unwrap() as u16,
        made_by: "API 3.0 CreateInstances",
    };
    let insts = [a.clone(), b.clone()];

    let r = api3
        .ok(
            "ModifyInstanceParams",
            json!({"InstanceId": b.id, "InstanceParams": [
                {"Key": "maxmemory-policy", "Value": "allkeys-lru"},
                {"Key": "timeout", "Value": "300"}]}),
        )
        .await;
    api3.task_succeeds(r["TaskId"].as_i64().unwrap(), "ModifyInstanceParams")
        .await;

    for inst in &insts {
        write_keys(inst).await;
        replicas_hold(inst, "k0", "before-0").await;
    }
    let r = api3
        .ok(
            "ManualBackupInstance",
            json!({"InstanceId": b.id, "Remark": "before the upgrade"}),
        )
        .await;
    api3.task_succeeds(r["TaskId"].as_i64().unwrap(), "ManualBackupInstance")
        .await;
    let backups = api3
        .ok("DescribeInstanceBackups", json!({ "InstanceId": b.id }))
        .await;
    assert_eq!(
        backups["TotalCount"], 1,
        "the previous release's backup: {backups}"
    );
    let old_backup = backups["BackupSet"][0].clone();

    let before = nodes(&insts, &d.data).await;
    assert_eq!(
        before.len(),
        4,
        "a master and a replica per instance before the upgrade: {before:#?}"
    );
    // The previous release's sentinels watch every instance (this is what must carry over),
    // and it runs one proxy.
    sentinels_watch(&ha, &insts, &before, down_before, "before the upgrade").await;
    let ha_before = ha.procs().await;

    // From here until the new crsd has taken over, every address is probed: a new connection
    // and a kept one, every 20 ms.
    let probe = Probe::start(&insts).await;

    // ---- the previous release stops; its redis-servers, sentinels and proxy go on serving.
    match stop {
        Stop::Kill9 => d.kill9(),
        Stop::Term => {
            let status = d.terminate();
            assert!(
                status.success(),
                "the previous crsd exits 0 on SIGTERM: {status}"
            );
        }
    }
    assert_same_nodes(
        &before,
        &nodes(&insts, &d.data).await,
        "with no crsd running",
    );
    ha_before.assert_same(&ha.procs().await, "with no crsd running");

    // ---- the new crsd on the same data dir and config (with the keys the previous one did
    // not know, and its own down-after).
    d.binary = PathBuf::from(env!("CARGO_BIN_EXE_crsd"));
    assert_ne!(d.binary, previous, "the new crsd is another binary");
    std::fs::write(&d.config, &new_config).unwrap();
    let log_from = d.log().len();
    d.start().await;
    // /healthz answers after the first supervisor pass (the one that adopts or restarts).
    assert_same_nodes(
        &before,
        &nodes(&insts, &d.data).await,
        "after the new crsd's first supervisor pass",
    );
    // The proxy and the sentinels are adopted: the same processes (a proxy reload keeps its
    // master process). Every sentinel still watches every instance, at the same master node,
    // with the new crsd's settings.
    sentinels_watch(&ha, &insts, &before, down_after, "after the upgrade").await;
    ha_before.assert_same(&ha.procs().await, "once the new crsd has started");
    no_complaints(&d.log()[log_from..], &insts);

    // Every adopted redis-server still finds its config file where it was started with it
    // (it rewrites it there: `CONFIG REWRITE`, a parameter change, Sentinel's switch).
    for (name, n) in &before {
        let conf = conf_of(n.pid);
        assert!(
            conf.is_file(),
            "{name} (pid {}): its config file {} is gone after the upgrade",
            n.pid,
            conf.display()
        );
    }

    // Every instance is running in both dialects' views.
    let all = v2
        .ok("DescribeRedis", &[("limit", "10"), ("offset", "0")])
        .await;
    assert_eq!(
        all["totalCount"], 2,
        "DescribeRedis after the upgrade: {all}"
    );
    for inst in &insts {
        let one = v2.describe_one(&inst.id).await;
        assert_eq!(
            one["status"], 2,
            "{} ({}) is not running in v2 DescribeRedis after the upgrade: {one}",
            inst.id, inst.made_by
        );
        assert_eq!(one["port"], inst.port, "{}: same port: {one}", inst.id);
        let r = api3
            .ok("DescribeInstances", json!({ "InstanceId": inst.id }))
            .await;
        assert_eq!(
            r["InstanceSet"][0]["Status"], 2,
            "{} ({}) is not running in API 3.0 DescribeInstances after the upgrade: {r}",
            inst.id, inst.made_by
        );
        assert_eq!(
            (&r["InstanceSet"][0]["WanIp"], &r["InstanceSet"][0]["Port"]),
            (&json!(inst.host), &json!(inst.port)),
            "{} ({}): the address the API gave before the upgrade: {r}",
            inst.id,
            inst.made_by
        );
        assert_eq!(
            r["InstanceSet"][0]["RedisReplicasNum"], 1,
            "{} ({}): one replica, as the previous release made it: {r}",
            inst.id, inst.made_by
        );
    }

    // The address the API gave is still the instance's stable address: the proxy listens
    // there and leads to the master, which has a port of its own.
    for inst in &insts {
        let mut c = conn(inst, inst.port, "address").await;
        let server = info(&mut c, "server").await;
        let node_port = server
            .lines()
            .find_map(|l| l.strip_prefix("tcp_port:"))
            .and_then(|p| p.trim().parse::<u16>().ok())
            .expect("INFO server has tcp_port");
        assert_ne!(
            node_port, inst.port,
            "{}: the address is served by the proxy, the master has its own port",
            inst.id
        );
        let replication = info(&mut c, "replication").await;
        assert!(
            replication.contains("role:master") && replication.contains("connected_slaves:1"),
            "{}: the address leads to the master, its replica follows it: {replication}",
            inst.id
        );
    }
    // Not one probe of an address failed while crsd was replaced.
    probe.stop_and_check().await;

    // The data is there, writes work and reach the replica.
    for inst in &insts {
        keys_are_there(inst).await;
        let mut m = conn(inst, inst.port, "master").await;
        set(&mut m, "after-upgrade", &inst.id).await;
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(10_000)
            .query_async(&mut m)
            .await
            .unwrap_or_else(|e| panic!("{}: WAIT after the upgrade: {e}", inst.id));
        assert_eq!(
            acked, 1,
            "{} ({}): a write after the upgrade reaches no replica",
            inst.id, inst.made_by
        );
        replicas_hold(inst, "after-upgrade", &inst.id).await;
    }

    // The new crsd's exporter scrapes the adopted nodes: they got its ACL user when adopted.
    let exporter = config
        .lines()
        .find_map(|l| l.strip_prefix("exporter_listen = "))
        .expect("the test config names the exporter's address")
        .trim_matches('"')
        .to_string();
    for inst in &insts {
        for port in node_ports(&before, &inst.id) {
            // The master is reached through the address: its own port is in its INFO.
            let mut c = conn(inst, port, "node").await;
            let own: u16 = info_field(&mut c, "server", "tcp_port")
                .await
                .parse()
                .unwrap();
            exporter_scrapes(&exporter, &inst.host, own, &d.data).await;
        }
    }

    // The parameter change and the backup of the previous release are still there.
    let r = api3
        .ok("DescribeInstanceParams", json!({ "InstanceId": b.id }))
        .await;
    assert_eq!(
        param(&r, "InstanceIntegerParam", "timeout"),
        "300",
        "{}: the parameter change of the previous release: {r}",
        b.id
    );
    assert_eq!(
        param(&r, "InstanceEnumParam", "maxmemory-policy"),
        "allkeys-lru",
        "{}: the parameter change of the previous release: {r}",
        b.id
    );
    for port in node_ports(&before, &b.id) {
        let mut c = conn(&b, port, "node").await;
        assert_eq!(
            info_field(&mut c, "memory", "maxmemory_policy").await,
            "allkeys-lru",
            "{} node on port {port}: maxmemory-policy after the upgrade",
            b.id
        );
    }
    let backups = api3
        .ok("DescribeInstanceBackups", json!({ "InstanceId": b.id }))
        .await;
    assert_eq!(backups["TotalCount"], 1, "after the upgrade: {backups}");
    let backup = &backups["BackupSet"][0];
    for field in ["BackupId", "BackupSize", "StartTime", "Remark", "Status"] {
        assert_eq!(
            backup[field], old_backup[field],
            "{}: backup field {field} after the upgrade",
            b.id
        );
    }
    let size = download(&api3, &b.id, backup["BackupId"].as_str().unwrap()).await;
    assert_eq!(
        Some(size),
        backup["BackupSize"].as_u64(),
        "{}: the previous release's backup file downloads whole",
        b.id
    );

    // Change tasks on adopted instances: a resize (both nodes) and a backup (from the replica).
    let v = v2
        .ok("UpgradeRedis", &[("redisId", &a.id), ("memSize", "2048")])
        .await;
    let deal = v["data"]["dealId"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = v2
            .ok("DescribeRedisDealDetail", &[("dealIds.0", deal)])
            .await;
        match v["dealDetails"][0]["status"].as_i64() {
            Some(4) => break,
            Some(5) => panic!(
                "{} ({}): the new crsd could not resize the adopted instance: {v}",
                a.id, a.made_by
            ),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "{}: resize not delivered: {v}",
            a.id
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let one = v2.describe_one(&a.id).await;
    assert_eq!(one["size"], 2048, "{}: resized: {one}", a.id);
    assert_eq!(
        one["status"], 2,
        "{}: running after the resize: {one}",
        a.id
    );
    for port in node_ports(&before, &a.id) {
        let mut c = conn(&a, port, "node").await;
        assert_eq!(
            info_field(&mut c, "memory", "maxmemory").await,
            (2048u64 << 20).to_string(),
            "{} node on port {port}: maxmemory after a resize by the new crsd",
            a.id
        );
    }
    let r = api3
        .ok(
            "ManualBackupInstance",
            json!({"InstanceId": a.id, "Remark": "after the upgrade"}),
        )
        .await;
    api3.task_succeeds(
        r["TaskId"].as_i64().unwrap(),
        "ManualBackupInstance after the upgrade",
    )
    .await;
    let backups = api3
        .ok("DescribeInstanceBackups", json!({ "InstanceId": a.id }))
        .await;
    assert_eq!(backups["TotalCount"], 1, "{}: {backups}", a.id);
    let backup = &backups["BackupSet"][0];
    let size = download(&api3, &a.id, backup["BackupId"].as_str().unwrap()).await;
    assert_eq!(Some(size), backup["BackupSize"].as_u64(), "{backups}");

    // Still the same processes after all that and ten more supervisor passes (200 ms each):
    // nothing restarts them later either.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        assert_same_nodes(
            &before,
            &nodes(&insts, &d.data).await,
            "while the new crsd supervises",
        );
        ha_before.assert_same(&ha.procs().await, "while the new crsd supervises");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    no_complaints(&d.log()[log_from..], &insts);

    // The new crsd runs the adopted nodes from their (possibly migrated) folders: a master
    // killed -9 comes back from its own AOF with every key and the parameter change.
    let b_master = &before[&format!("{} master", b.id)];
    kill9(b_master.pid);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut m = loop {
        if let Ok(mut m) = redis_conn(&b.host, b.port, PASSWORD).await {
            let pid = info_field(&mut m, "server", "process_id").await;
            if pid != b_master.pid.to_string()
                && info_field(&mut m, "persistence", "loading").await == "0"
            {
                break m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} ({}): the new crsd did not bring back its master (pid {}) after a kill -9",
            b.id,
            b.made_by,
            b_master.pid
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    keys_are_there_with(&b, &mut m, KEYS + 1).await;
    assert_eq!(
        info_field(&mut m, "memory", "maxmemory_policy").await,
        "allkeys-lru",
        "{}: the parameter change after a restart of the master by the new crsd",
        b.id
    );
    set(&mut m, "after-restart", &b.id).await;
    replicas_hold(&b, "after-restart", &b.id).await;

    // It stops adopted nodes (it recognises them as its own) and starts them again with the
    // data: DestroyPrepaidInstance isolates, StartupInstance starts.
    api3.ok("DestroyPrepaidInstance", json!({ "InstanceId": a.id }))
        .await;
    api3.wait_status(&a.id, -2).await;
    for (name, n) in before.iter().filter(|(name, _)| name.starts_with(&a.id)) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs(n.pid) {
            assert!(
                Instant::now() < deadline,
                "{name} (pid {}, adopted) still runs after the new crsd isolated {} ({})",
                n.pid,
                a.id,
                a.made_by
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let r = api3
        .ok("StartupInstance", json!({ "InstanceId": a.id }))
        .await;
    api3.task_succeeds(r["TaskId"].as_i64().unwrap(), "StartupInstance")
        .await;
    api3.wait_status(&a.id, 2).await;
    let mut m = conn(&a, a.port, "master").await;
    keys_are_there_with(&a, &mut m, KEYS + 1).await;
    replicas_hold(&a, "after-upgrade", &a.id).await;
    // Through all of that the sentinels and the proxy the previous release started served on.
    ha_before.assert_same(&ha.procs().await, "at the end");
}

/// Fails on a warning or error of the new crsd that names an instance: adopting a node the
/// previous release left running is routine, nothing to warn about (a node it cannot
/// recognise as its own would be "not running" to it, and its start would fail on the port).
fn no_complaints(log: &str, insts: &[Inst]) {
    let complaints: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| insts.iter().any(|i| l.contains(&i.id)))
        .collect();
    assert!(
        complaints.is_empty(),
        "the new crsd complains about adopted instances:\n  {}",
        complaints.join("\n  ")
    );
}

/// The exporter at `exporter` answers `redis_up 1` for the node at `host:port` (within 15 s:
/// it follows the nodes a supervisor pass after the start).
async fn exporter_scrapes(exporter: &str, host: &str, port: u16, data: &Path) {
    let target = format!("redis://{host}:{port}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::Client::new()
            .get(format!("http://{exporter}/scrape"))
            .query(&[("target", &target)])
            .send()
            .await
        {
            last = r.text().await.unwrap_or_default();
            if last.lines().any(|l| l == "redis_up 1") {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The nodes it was given (not their secrets).
    let given: BTreeMap<String, Value> = serde_json::from_str(
        &std::fs::read_to_string(data.join("exporter/passwords.json")).unwrap_or_default(),
    )
    .unwrap_or_default();
    panic!(
        "the exporter does not scrape the adopted node {target} (it was given {:?}): {last}",
        given.keys().collect::<Vec<_>>()
    );
}

fn kill9(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success(), "kill -9 {pid}");
}

/// Whether `pid` is a live redis-server (not a zombie, not a recycled pid).
fn runs(pid: u32) -> bool {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    String::from_utf8_lossy(&cmd).contains("redis-server")
        && !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z'))
}

// ------------------------------------------------------------------------------ nodes

/// One running redis-server, as it describes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Node {
    port: u16,
    pid: u32,
    /// Random at each start of redis-server: a restart shows even if the pid came back.
    run_id: String,
}

/// Every node of `insts` (`"<id> master"`, `"<id> replica :<port>"`), checked against the
/// redis-server processes whose command line names `data`: each of them is one of the nodes.
async fn nodes(insts: &[Inst], data: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    for inst in insts {
        let mut m = conn(inst, inst.port, "master").await;
        out.insert(
            format!("{} master", inst.id),
            node(inst, inst.port, &mut m).await,
        );
        for port in replica_ports(&info(&mut m, "replication").await) {
            let mut r = conn(inst, port, "replica").await;
            out.insert(
                format!("{} replica :{port}", inst.id),
                node(inst, port, &mut r).await,
            );
        }
    }
    let seen: BTreeSet<u32> = out.values().map(|n| n.pid).collect();
    let running = redis_servers_naming(data);
    assert_eq!(
        running, seen,
        "the redis-server processes of the data dir (left) are exactly the instances' nodes \
         (right): {out:#?}"
    );
    out
}

async fn node(inst: &Inst, port: u16, c: &mut redis::aio::MultiplexedConnection) -> Node {
    let info = info(c, "server").await;
    let field = |name: &str| {
        info_value(&info, name)
            .unwrap_or_else(|| panic!("{} :{port}: INFO server without {name}", inst.id))
    };
    Node {
        port,
        pid: field("process_id").parse().unwrap(),
        run_id: field("run_id"),
    }
}

/// Fails naming every node whose process changed, went away or appeared.
fn assert_same_nodes(before: &BTreeMap<String, Node>, after: &BTreeMap<String, Node>, when: &str) {
    let mut wrong = Vec::new();
    for (name, b) in before {
        match after.get(name) {
            None => wrong.push(format!("{name} (pid {}) is gone", b.pid)),
            Some(a) if a.pid != b.pid || a.run_id != b.run_id => wrong.push(format!(
                "{name} was restarted: pid {} (run_id {}) is now pid {} (run_id {})",
                b.pid, b.run_id, a.pid, a.run_id
            )),
            Some(_) => {}
        }
    }
    for (name, a) in after {
        if !before.contains_key(name) {
            wrong.push(format!("{name} (pid {}) is new", a.pid));
        }
    }
    assert!(
        wrong.is_empty(),
        "redis-server processes {when}:\n  {}",
        wrong.join("\n  ")
    );
}

fn node_ports(nodes: &BTreeMap<String, Node>, id: &str) -> Vec<u16> {
    nodes
        .iter()
        .filter(|(name, _)| name.starts_with(&format!("{id} ")))
        .map(|(_, n)| n.port)
        .collect()
}

/// The ports of the replicas a master's `INFO replication` lists (`slaveN:ip=..,port=..`).
fn replica_ports(info: &str) -> Vec<u16> {
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains(":ip="))
        .map(|l| {
            l.split(',')
                .find_map(|kv| kv.strip_prefix("port="))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("a port in {l}"))
        })
        .collect()
}

/// The pids of the redis-server processes whose command line names `dir`, without their
/// forked children (a BGSAVE or AOF rewrite keeps its parent's command line).
fn redis_servers_naming(dir: &Path) -> BTreeSet<u32> {
    procs_naming(dir, "redis-server")
}

/// The pids of the live processes of `program` (the file name of their `argv[0]`) whose command
/// line names `dir`, without those whose parent is one of them (a redis-server's save child,
/// haproxy's workers).
fn procs_naming(dir: &Path, program: &str) -> BTreeSet<u32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = BTreeMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        let argv0 = cmd.split('\0').next().unwrap_or_default();
        let name = argv0.rsplit('/').next().unwrap_or_default();
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        if (name == program || name.starts_with(&format!("{program} ")))
            && cmd.contains(&needle)
            && !field("State:").starts_with('Z')
        {
            found.insert(pid, field("PPid:").parse::<u32>().unwrap_or(0));
        }
    }
    found
        .iter()
        .filter(|(_, ppid)| !found.contains_key(ppid))
        .map(|(pid, _)| *pid)
        .collect()
}

/// The config file a redis-server was started with (`<redis-server> <conf> ...`).
fn conf_of(pid: u32) -> PathBuf {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd = String::from_utf8_lossy(&cmd);
    cmd.split('\0')
        .find(|a| a.ends_with(".conf"))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("pid {pid}: no config file in its command line {cmd:?}"))
}

// ------------------------------------------------------------------------------ config

/// Keys of this tree's config that the previous release does not know, as (section, key): it
/// refuses unknown keys, so they are left out of its config and given to the new crsd only.
/// A key the test config gains must be listed here if the previous release lacks it.
/// The warm pool's sizes (0 in the test config: the processes of the data dir are then exactly
/// the instances' nodes, as asserted).
const NEWER_KEYS: &[(&str, &str)] = &[
    ("instances", "warm_nodes"),
    ("instances", "warm_cluster_nodes"),
];

/// Sections of this tree's config that the previous release does not know: left out whole.
const NEWER_SECTIONS: &[&str] = &[];

/// `config` without the lines of [`NEWER_KEYS`] and [`NEWER_SECTIONS`].
fn without_newer_keys(config: &str) -> String {
    without(config, NEWER_KEYS, NEWER_SECTIONS)
}

/// `config` without the lines of `keys` (section, key) and of the `sections`.
fn without(config: &str, keys: &[(&str, &str)], sections: &[&str]) -> String {
    let mut section = String::new();
    let mut out = String::new();
    for line in config.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            section = name.trim().to_string();
        }
        let newer = sections.contains(&section.as_str())
            || t.split_once('=')
                .is_some_and(|(key, _)| keys.contains(&(section.as_str(), key.trim())));
        if !newer {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

// ------------------------------------------------------------------------------ sentinels, proxy

/// Where the host's sentinels are: the ports of the config, the secret crsd keeps for them.
struct HaSetup {
    ports: Vec<u16>,
    data: PathBuf,
}

/// The host's sentinels (by port, as each describes itself) and its proxy's master process.
#[derive(Debug)]
struct HaProcs {
    sentinels: BTreeMap<u16, Node>,
    proxy: u32,
}

impl HaSetup {
    fn read(config: &str, data: &Path) -> HaSetup {
        let v: toml::Value = toml::from_str(config).expect("the test config is TOML");
        let ports: Vec<u16> = v["ha"]["sentinel_ports"]
            .as_array()
            .expect("the test config names the sentinel ports")
            .iter()
            .map(|p| p.as_integer().unwrap() as u16)
            .collect();
        assert_eq!(ports.len(), 3, "three sentinels in the test config");
        HaSetup {
            ports,
            data: data.to_path_buf(),
        }
    }

    async fn sentinel(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let secret = std::fs::read(self.data.join("sentinel.secret"))
            .expect("crsd keeps the sentinels' secret in the data dir");
        let url = format!("redis://:{}@127.0.0.1:{port}/", hex::encode(secret));
        let client = redis::Client::open(url).unwrap();
        tokio::time::timeout(
            Duration::from_secs(5),
            client.get_multiplexed_async_connection(),
        )
        .await
        .unwrap_or_else(|_| panic!("the sentinel on port {port} does not answer"))
        .unwrap_or_else(|e| panic!("the sentinel on port {port}: {e}"))
    }

    /// The sentinels and the proxy now; each sentinel redis-sentinel process and haproxy
    /// master naming the data dir must be one of them.
    async fn procs(&self) -> HaProcs {
        let mut sentinels = BTreeMap::new();
        for &port in &self.ports {
            let mut c = self.sentinel(port).await;
            let server = info(&mut c, "server").await;
            let field = |name: &str| {
                info_value(&server, name)
                    .unwrap_or_else(|| panic!("sentinel :{port}: INFO server without {name}"))
            };
            sentinels.insert(
                port,
                Node {
                    port,
                    pid: field("process_id").parse().unwrap(),
                    run_id: field("run_id"),
                },
            );
        }
        let seen: BTreeSet<u32> = sentinels.values().map(|n| n.pid).collect();
        assert_eq!(
            procs_naming(&self.data, "redis-sentinel"),
            seen,
            "the redis-sentinel processes of the data dir (left) are exactly the configured \
             sentinels (right): {sentinels:#?}"
        );
        let proxies = procs_naming(&self.data, "haproxy");
        assert_eq!(
            proxies.len(),
            1,
            "one haproxy master process names the data dir: {proxies:?}"
        );
        HaProcs {
            sentinels,
            proxy: *proxies.first().unwrap(),
        }
    }
}

impl HaProcs {
    /// Fails naming every sentinel or proxy process that changed.
    fn assert_same(&self, now: &HaProcs, when: &str) {
        let mut wrong = Vec::new();
        for (port, b) in &self.sentinels {
            match now.sentinels.get(port) {
                Some(a) if a.pid == b.pid && a.run_id == b.run_id => {}
                Some(a) => wrong.push(format!(
                    "the sentinel on port {port} was restarted: pid {} (run_id {}) is now pid {} \
                     (run_id {})",
                    b.pid, b.run_id, a.pid, a.run_id
                )),
                None => wrong.push(format!("the sentinel on port {port} is gone")),
            }
        }
        if self.proxy != now.proxy {
            wrong.push(format!(
                "the proxy was restarted: its master pid {} is now {}",
                self.proxy, now.proxy
            ));
        }
        assert!(
            wrong.is_empty(),
            "sentinels and proxy {when}:\n  {}",
            wrong.join("\n  ")
        );
    }
}

/// Waits until every sentinel watches every instance at its master node of `nodes` (the
/// process of that `run_id`) with `down_after_ms`, sees it up (flags `master` alone), its
/// replica, and the two other sentinels.
async fn sentinels_watch(
    ha: &HaSetup,
    insts: &[Inst],
    nodes: &BTreeMap<String, Node>,
    down_after_ms: &str,
    when: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for &port in &ha.ports {
        let mut c = ha.sentinel(port).await;
        for inst in insts {
            let master = &nodes[&format!("{} master", inst.id)];
            loop {
                let view: redis::RedisResult<BTreeMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("MASTER")
                    .arg(&inst.id)
                    .query_async(&mut c)
                    .await;
                let field = |v: &BTreeMap<String, String>, k: &str| v.get(k).cloned();
                let watched = view.as_ref().is_ok_and(|v| {
                    field(v, "runid").as_ref() == Some(&master.run_id)
                        && field(v, "flags").as_deref() == Some("master")
                        && field(v, "num-slaves").as_deref() == Some("1")
                        && field(v, "num-other-sentinels").as_deref() == Some("2")
                        && field(v, "down-after-milliseconds").as_deref() == Some(down_after_ms)
                });
                if watched {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{} ({}) {when}: the sentinel on port {port} does not watch its master (pid \
                     {}, run_id {}) with its replica and the two other sentinels, down after \
                     {down_after_ms} ms: {view:?}",
                    inst.id,
                    inst.made_by,
                    master.pid,
                    master.run_id
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Probes every instance's address until stopped: a new connection and a PING, and a PING on
/// a connection kept open, every 20 ms; each failure is recorded.
struct Probe {
    stop: tokio::sync::oneshot::Sender<()>,
    /// Rounds done (every address probed once each).
    rounds: Arc<AtomicUsize>,
    started: Instant,
    task: tokio::task::JoinHandle<(Vec<usize>, Vec<String>)>,
}

impl Probe {
    /// Starts probing; returns once every address was probed twice.
    async fn start(insts: &[Inst]) -> Probe {
        let insts = insts.to_vec();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let rounds = Arc::new(AtomicUsize::new(0));
        let done = rounds.clone();
        let started = Instant::now();
        let task = tokio::spawn(async move {
            let mut kept: Vec<Option<redis::aio::MultiplexedConnection>> = vec![None; insts.len()];
            let mut ok = vec![0; insts.len()];
            let mut failed = Vec::new();
            while let Err(tokio::sync::oneshot::error::TryRecvError::Empty) = stopped.try_recv() {
                for (i, inst) in insts.iter().enumerate() {
                    let at = started.elapsed();
                    match ping(inst, None).await {
                        Ok(_) => ok[i] += 1,
                        Err(e) => failed.push(format!(
                            "{} :{} at {at:?}: a new connection: {e}",
                            inst.id, inst.port
                        )),
                    }
                    match ping(inst, kept[i].take()).await {
                        Ok(c) => kept[i] = Some(c),
                        Err(e) => failed.push(format!(
                            "{} :{} at {at:?}: the kept connection: {e}",
                            inst.id, inst.port
                        )),
                    }
                }
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, failed)
        });
        let probe = Probe {
            stop,
            rounds,
            started,
            task,
        };
        probe.more_rounds(2).await;
        probe
    }

    /// Waits until every address was probed `n` more times.
    async fn more_rounds(&self, n: usize) {
        let want = self.rounds.load(Ordering::SeqCst) + n;
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.rounds.load(Ordering::SeqCst) < want {
            assert!(Instant::now() < deadline, "the probe does not advance");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Probes twice more (after what the caller saw), stops; fails on any failed probe.
    async fn stop_and_check(self) {
        self.more_rounds(2).await;
        let _ = self.stop.send(());
        let (ok, failed) = self.task.await.expect("the probe task");
        assert!(
            failed.is_empty(),
            "an address failed while crsd was replaced ({} failures):\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
        eprintln!(
            "every address served {ok:?} new connections and as many PINGs on a kept one in {:?} \
             while crsd was replaced",
            self.started.elapsed()
        );
    }
}

/// A PING at `inst`'s address on `kept`, or on a new connection; returns the connection.
async fn ping(
    inst: &Inst,
    kept: Option<redis::aio::MultiplexedConnection>,
) -> Result<redis::aio::MultiplexedConnection, String> {
    let attempt = async {
        let mut c = match kept {
            Some(c) => c,
            None => redis_conn(&inst.host, inst.port, PASSWORD).await?,
        };
        let pong: String = redis::cmd("PING").query_async(&mut c).await?;
        if pong != "PONG" {
            return Err(redis::RedisError::from((
                redis::ErrorKind::ResponseError,
                "not PONG",
                pong,
            )));
        }
        Ok(c)
    };
    match tokio::time::timeout(Duration::from_secs(2), attempt).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("no answer in 2 s".to_string()),
    }
}

// ------------------------------------------------------------------------------ data

async fn conn(inst: &Inst, port: u16, what: &str) -> redis::aio::MultiplexedConnection {
    redis_conn(&inst.host, port, PASSWORD)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{} ({}): its {what} on port {port} does not serve: {e}",
                inst.id, inst.made_by
            )
        })
}

async fn info(c: &mut redis::aio::MultiplexedConnection, section: &str) -> String {
    redis::cmd("INFO")
        .arg(section)
        .query_async(c)
        .await
        .unwrap()
}

fn info_value(info: &str, name: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .map(|v| v.trim().to_string())
}

async fn info_field(
    c: &mut redis::aio::MultiplexedConnection,
    section: &str,
    name: &str,
) -> String {
    info_value(&info(c, section).await, name).unwrap_or_else(|| panic!("INFO {section}: {name}"))
}

async fn set(c: &mut redis::aio::MultiplexedConnection, k: &str, v: &str) {
    let _: () = redis::cmd("SET")
        .arg(k)
        .arg(v)
        .query_async(c)
        .await
        .unwrap();
}

async fn write_keys(inst: &Inst) {
    let mut c = conn(inst, inst.port, "master").await;
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        pipe.set(format!("k{i}"), format!("before-{i}")).ignore();
    }
    let _: () = pipe.query_async(&mut c).await.unwrap();
}

async fn keys_are_there(inst: &Inst) {
    let mut c = conn(inst, inst.port, "master").await;
    keys_are_there_with(inst, &mut c, KEYS).await;
}

/// `dbsize` keys on the connection's node, the first [`KEYS`] with their values.
async fn keys_are_there_with(
    inst: &Inst,
    c: &mut redis::aio::MultiplexedConnection,
    dbsize: usize,
) {
    let size: usize = redis::cmd("DBSIZE").query_async(c).await.unwrap();
    assert_eq!(
        size, dbsize,
        "{} ({}): keys after the upgrade",
        inst.id, inst.made_by
    );
    let mut pipe = redis::pipe();
    for i in 0..KEYS {
        pipe.get(format!("k{i}"));
    }
    let got: Vec<Option<String>> = pipe.query_async(c).await.unwrap();
    for (i, v) in got.iter().enumerate() {
        assert_eq!(
            v.as_deref(),
            Some(format!("before-{i}").as_str()),
            "{} ({}): key k{i} after the upgrade",
            inst.id,
            inst.made_by
        );
    }
}

/// Waits until every replica of `inst` (linked, not syncing) holds `k` = `v`.
async fn replicas_hold(inst: &Inst, k: &str, v: &str) {
    let mut m = conn(inst, inst.port, "master").await;
    // A replica whose master restarted reconnects on its own schedule.
    let deadline = Instant::now() + Duration::from_secs(20);
    let ports = loop {
        let repl = info(&mut m, "replication").await;
        let ports = replica_ports(&repl);
        if ports.len() == 1 {
            break ports;
        }
        assert!(
            Instant::now() < deadline,
            "{} ({}): the master lists {} replicas, not 1: {repl}",
            inst.id,
            inst.made_by,
            ports.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for port in ports {
        let mut r = conn(inst, port, "replica").await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let repl = info(&mut r, "replication").await;
            // Err while the replica loads what its master sent.
            let got: redis::RedisResult<Option<String>> =
                redis::cmd("GET").arg(k).query_async(&mut r).await;
            if repl.contains("master_link_status:up")
                && got.as_ref().is_ok_and(|g| g.as_deref() == Some(v))
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} ({}): the replica on port {port} does not replicate {k}={v} (holds {got:?}): {repl}",
                inst.id,
                inst.made_by
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn param(r: &Value, list: &str, name: &str) -> String {
    r[list]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["ParamName"] == name))
        .and_then(|p| p["CurrentValue"].as_str())
        .unwrap_or_else(|| panic!("{name} in {list}: {r}"))
        .to_string()
}

/// Downloads a backup through its API 3.0 link; returns its size.
async fn download(api3: &Tc3Client, id: &str, backup: &str) -> u64 {
    let r = api3
        .ok(
            "DescribeBackupUrl",
            json!({"InstanceId": id, "BackupId": backup}),
        )
        .await;
    let url = r["DownloadUrl"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{r}"));
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200, "{id}: downloading backup {backup}");
    resp.bytes().await.unwrap().len() as u64
}

// ------------------------------------------------------------------------------ API 3.0

/// A TC3-HMAC-SHA256 client for API 3.0 (POST with a JSON body, as the SDKs send it).
struct Tc3Client {
    url: String,
    host: String,
    secret_id: String,
    secret_key: String,
    http: reqwest::Client,
    /// Signatures sent (crsd takes a change only under a signature never used before).
    used: Mutex<HashSet<String>>,
}

impl Tc3Client {
    fn new(d: &Daemon) -> Tc3Client {
        let v2: V2Client = d.client();
        Tc3Client {
            url: v2.url,
            host: v2.host,
            secret_id: v2.secret_id,
            secret_key: v2.secret_key,
            http: reqwest::Client::new(),
            used: Mutex::new(HashSet::new()),
        }
    }

    fn authorization(&self, ts: i64, payload: &[u8]) -> String {
        common::tc3::authorization(&self.secret_id, &self.secret_key, &self.host, payload, ts)
    }

    async fn ok(&self, action: &str, params: Value) -> Value {
        let body = serde_json::to_vec(&params).unwrap();
        // The same body in the same second signs alike: a change waits for a fresh signature.
        let (ts, auth) = loop {
            let ts = chrono::Utc::now().timestamp();
            let auth = self.authorization(ts, &body);
            // The action is not signed: a read and a change with the same body sign alike.
            let reads = action.starts_with("Describe") && action != "DescribeBackupUrl";
            let fresh = self.used.lock().unwrap().insert(auth.clone());
            if reads || fresh {
                break (ts, auth);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let resp = self
            .http
            .post(format!("{}/", self.url))
            .body(body)
            .header("Host", &self.host)
            .header("Content-Type", "application/json")
            .header("Authorization", auth)
            .header("X-TC-Action", action)
            .header("X-TC-Timestamp", ts.to_string())
            .header("X-TC-Version", "2018-04-12")
            .header("X-TC-Region", "ap-guangzhou")
            .send()
            .await
            .expect("request reaches crsd");
        assert_eq!(resp.status(), 200, "{action}");
        let v: Value = resp.json().await.expect("a JSON body");
        let r = v["Response"].clone();
        assert!(r.get("Error").is_none(), "{action} failed: {v}");
        r
    }

    /// Waits until DescribeInstances gives the instance this Status.
    async fn wait_status(&self, id: &str, want: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self
                .ok("DescribeInstances", json!({ "InstanceId": id }))
                .await;
            if r["InstanceSet"][0]["Status"] == want {
                return;
            }
            assert!(Instant::now() < deadline, "{id}: Status {want}: {r}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits for a task to end and asserts it succeeded.
    async fn task_succeeds(&self, task: i64, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.ok("DescribeTaskInfo", json!({ "TaskId": task })).await;
            match r["Status"].as_str() {
                Some("succeed") => return,
                Some("preparing" | "running") => {}
                _ => panic!("{what}: task {task} did not succeed: {r}"),
            }
            assert!(Instant::now() < deadline, "{what}: task {task} did not end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
