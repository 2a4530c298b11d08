//! crsd's own metrics end to end: `/metrics` on the metrics listener, read with a Prometheus
//! text-format parser, before and after signed requests of two dialects (known actions that
//! succeed and fail, an action no dialect knows), an unsigned one of the third and an
//! instance's creation; and `[metrics] listen = ""`, which leaves the listener out.

mod common;

use common::daemon::Daemon;
use common::tc3::Tc3;
use common::TestCrsd;
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const PASSWORD: &str = "49A2d!e@f12e";

/// One scrape of `/metrics`, parsed; the Content-Type must be the text format's.
async fn scrape(addr: SocketAddr) -> Scrape {
    let resp = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/plain; version=0.0.4",
        "Prometheus' text format"
    );
    let text = resp.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid text format")
}

/// The sample of `metric` whose labels are exactly `labels`.
fn sample<'a>(
    s: &'a Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    s.samples.iter().find(|x| {
        x.metric == metric
            && x.labels.len() == labels.len()
            && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
    })
}

/// A counter's or gauge's value (0 when the series does not exist yet).
fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(s, metric, labels).map(|x| &x.value) {
        None => 0.0,
        Some(Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v)) => *v,
        Some(other) => panic!("{metric} is not a single value: {other:?}"),
    }
}

/// How many observations a histogram holds (its `+Inf` bucket; 0 when absent).
fn observations(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    match sample(s, metric, labels).map(|x| &x.value) {
        None => 0.0,
        Some(Value::Histogram(buckets)) => {
            let inf = buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .expect("a +Inf bucket");
            // Cumulative buckets.
            assert!(
                buckets.windows(2).all(|w| w[0].count <= w[1].count),
                "{buckets:?}"
            );
            inf.count
        }
        Some(other) => panic!("{metric} is not a histogram: {other:?}"),
    }
}

fn requests(s: &Scrape, dialect: &str, action: &str, code: &str) -> f64 {
    value(
        s,
        "crsd_api_requests_total",
        &[("dialect", dialect), ("action", action), ("code", code)],
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_move_with_requests_tasks_and_instances() {
    let t = TestCrsd::start().await;
    let running = t.running.as_ref().unwrap();
    let addr = running.metrics_addr.expect("the metrics listener is on");
    assert_ne!(addr, running.addr, "a listener of its own");
    assert_ne!(addr.port(), 9751, "tests bind any free port");
    let v2 = t.client();
    let tc3 = Tc3::like(&v2);

    let before = scrape(addr).await;
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        let v = value(&before, name, &[]);
        assert!(
            sample(&before, name, &[]).is_some(),
            "process metric {name} is missing"
        );
        if name != "process_cpu_seconds_total" {
            assert!(v > 0.0, "{name} = {v}");
        }
    }
    assert_eq!(value(&before, "crsd_backup_store_bytes", &[]), 0.0);
    assert!(sample(&before, "crsd_backup_store_bytes", &[]).is_some());
    assert_eq!(
        value(&before, "crsd_instances", &[("status", "running")]),
        0.0
    );
    assert!(sample(&before, "crsd_instances", &[("status", "running")]).is_some());

    // v2: two successes, a known action that fails (no such task: 4000), an unknown action.
    v2.ok("DescribeRedisZones", &[]).await;
    v2.ok("DescribeRedisZones", &[]).await;
    v2.err("DescribeTaskInfo", &[("requestId", "987654")], 4000, None)
        .await;
    v2.err("NoSuchAction", &[], 4000, None).await;
    // API 3.0: an unknown action, a known one that fails, and an instance's creation (its
    // task ends).
    tc3.err("HackTheGibson", json!({}), "InvalidAction").await;
    tc3.err(
        "DescribeTaskInfo",
        json!({ "TaskId": 987654 }),
        "ResourceNotFound",
    )
    .await;
    let id = tc3.create(PASSWORD, 1).await;
    // Capital Online, unsigned: refused before its action is believed, so `unknown`.
    let r = reqwest::get(format!("{}/redis?Action=DescribeRegins", t.url))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["Code"], "ArgMissing", "{body}");

    // The task's end is counted right after its last commit; the deal is delivered by that
    // same commit, so this waits microseconds, not seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let s = scrape(addr).await;
        let ended = value(
            &s,
            "crsd_tasks_total",
            &[("kind", "newInstance"), ("state", "succeeded")],
        );
        if ended >= 1.0 || Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let moved = |dialect, action, code| {
        requests(&after, dialect, action, code) - requests(&before, dialect, action, code)
    };
    assert_eq!(moved("v2", "DescribeRedisZones", "0"), 2.0);
    assert_eq!(moved("v2", "DescribeTaskInfo", "4000"), 1.0);
    assert_eq!(moved("v2", "unknown", "4000"), 1.0, "v2's unknown action");
    assert_eq!(moved("tc3", "unknown", "InvalidAction"), 1.0);
    assert_eq!(moved("tc3", "DescribeTaskInfo", "ResourceNotFound"), 1.0);
    assert_eq!(moved("tc3", "CreateInstances", "Success"), 1.0);
    assert!(moved("tc3", "DescribeInstanceDealDetail", "Success") >= 1.0);
    assert_eq!(moved("co", "unknown", "ArgMissing"), 1.0);
    assert_eq!(moved("co", "DescribeRegins", "ArgMissing"), 0.0);
    // The names clients made up are nowhere: label values come from the dialects' tables.
    let actions: BTreeSet<&str> = after
        .samples
        .iter()
        .filter(|x| x.metric == "crsd_api_requests_total")
        .filter_map(|x| x.labels.get("action"))
        .collect();
    assert!(
        !actions.contains("NoSuchAction") && !actions.contains("HackTheGibson"),
        "{actions:?}"
    );
    assert!(
        !actions.iter().any(|a| a.is_empty()),
        "every request has an action label: {actions:?}"
    );

    // The latency histogram counted every v2 request (4) and at least the 3.0 ones above.
    let hist = "crsd_api_request_duration_seconds";
    let v2_seen = observations(&after, hist, &[("dialect", "v2")])
        - observations(&before, hist, &[("dialect", "v2")]);
    assert_eq!(v2_seen, 4.0);
    let tc3_seen = observations(&after, hist, &[("dialect", "tc3")]);
    assert!(tc3_seen >= 4.0, "{tc3_seen}");
    assert_eq!(
        value(
            &after,
            "crsd_api_request_duration_seconds_count",
            &[("dialect", "v2")]
        ),
        v2_seen,
        "_count agrees with the +Inf bucket"
    );

    // The instance's task ended once, succeeded, and was timed.
    assert_eq!(
        value(
            &after,
            "crsd_tasks_total",
            &[("kind", "newInstance"), ("state", "succeeded")]
        ),
        1.0
    );
    assert_eq!(
        observations(
            &after,
            "crsd_task_duration_seconds",
            &[("kind", "newInstance")]
        ),
        1.0
    );
    // The instance runs, and the gauge says so (read from the store at scrape time).
    assert_eq!(tc3.describe(&id).await["Status"], 2, "running");
    let now = scrape(addr).await;
    assert_eq!(value(&now, "crsd_instances", &[("status", "running")]), 1.0);
    assert_eq!(value(&now, "crsd_instances", &[("status", "busy")]), 0.0);
    // The supervisor (every 200 ms here) has run by now.
    let lag = sample(&now, "crsd_loop_lag_seconds", &[("loop", "supervisor")])
        .expect("the supervisor's lag");
    assert!(matches!(lag.value, Value::Gauge(v) if v >= 0.0), "{lag:?}");
    assert!(sample(
        &now,
        "crsd_loop_pass_duration_seconds",
        &[("loop", "supervisor")]
    )
    .is_some());
    // The process's CPU is a counter (whole seconds: the registry's process collector
    // counts clock ticks by the second, so a young crsd shows 0).
    assert!(matches!(
        sample(&now, "process_cpu_seconds_total", &[]).map(|x| &x.value),
        Some(Value::Counter(v)) if *v >= 0.0
    ));
}

/// The crsd process's listening TCP sockets (their local ports): its descriptors matched with
/// the kernel's table of listening sockets.
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(target) = std::fs::read_link(fd.path()) {
            let t = target.to_string_lossy();
            if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                inodes.insert(inode.to_string());
            }
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address, st (0A: LISTEN), inode.
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// The real binary with `[metrics] listen = "127.0.0.1:0"` logs the port it bound and
/// serves there; with `listen = ""` it listens on the API's port alone.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_listen_address_leaves_the_listener_out() {
    // On, port 0: the log names the bound address.
    let dir = tempfile::tempdir().unwrap();
    let mut on = Daemon::new(
        dir.path(),
        "AKIDmetricsOn000000000000000000000",
        "metrics-on-secret-key-00000000000",
    );
    on.start().await;
    let log = on.log();
    let line = log
        .lines()
        .find(|l| l.contains("crsd serves its metrics at /metrics"))
        .unwrap_or_else(|| panic!("no metrics line in the log:\n{log}"));
    let addr: SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    assert_ne!(addr.port(), 0);
    let s = scrape(addr).await;
    assert!(sample(&s, "process_resident_memory_bytes", &[]).is_some());
    let ports = listening_ports(on.pid().unwrap());
    assert_eq!(
        ports,
        BTreeSet::from([on.port, addr.port()]),
        "the API and the metrics"
    );
    on.terminate();

    // Off.
    let dir = tempfile::tempdir().unwrap();
    let mut off = Daemon::new(
        dir.path(),
        "AKIDmetricsOff00000000000000000000",
        "metrics-off-secret-key-0000000000",
    );
    let config = std::fs::read_to_string(&off.config).unwrap();
    let disabled = config.replace("listen = \"127.0.0.1:0\"", "listen = \"\"");
    assert_ne!(
        config, disabled,
        "the test config sets the metrics listener"
    );
    std::fs::write(&off.config, disabled).unwrap();
    off.start().await;
    assert!(
        !off.log().contains("crsd serves its metrics"),
        "{}",
        off.log()
    );
    let ports = listening_ports(off.pid().unwrap());
    assert_eq!(ports, BTreeSet::from([off.port]), "the API's port alone");
    off.terminate();
}

/// `/sd/nodes`, parsed: the groups Prometheus' HTTP discovery would read.
async fn discovery(addr: SocketAddr) -> Vec<serde_json::Value> {
    let resp = reqwest::get(format!("http://{addr}/sd/nodes"))
        .await
        .expect("the metrics listener answers");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    resp.json().await.expect("a JSON list")
}

/// Polls `/sd/nodes` until `done` holds for its groups of instance `id`.
async fn discovered(
    addr: SocketAddr,
    id: &str,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let groups: Vec<_> = discovery(addr)
            .await
            .into_iter()
            .filter(|g| g["labels"]["instance_id"] == id)
            .collect();
        if done(&groups) {
            return groups;
        }
        assert!(Instant::now() < deadline, "{id} in /sd/nodes: {groups:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What Prometheus does with one discovered group: `GET http://<target><__metrics_path__>
/// ?target=<__param_target>`, parsed.
async fn scrape_group(group: &serde_json::Value) -> Scrape {
    let url = format!(
        "http://{}{}",
        group["targets"][0].as_str().unwrap(),
        group["labels"]["__metrics_path__"].as_str().unwrap()
    );
    let target = group["labels"]["__param_target"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // The exporter restarts when the nodes change: a scrape can meet that moment.
        if let Ok(resp) = reqwest::Client::new()
            .get(&url)
            .query(&[("target", target)])
            .send()
            .await
        {
            let text = resp.text().await.unwrap();
            let s = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("text format");
            if value(&s, "redis_up", &[]) == 1.0 {
                return s;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the exporter never scraped {target}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_discovered_and_scraped_through_the_exporter() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.metrics.exporter_listen = format!("127.0.0.1:{}", common::free_port());
    let t = TestCrsd::start_with(dir, cfg.clone()).await;
    let addr = t.running.as_ref().unwrap().metrics_addr.unwrap();
    let v2 = t.client();
    let inst = v2.create(PASSWORD, 1).await.remove(0);
    let id = inst["redisId"].as_str().unwrap().to_string();

    let groups = discovered(addr, &id, |g| g.len() == 2).await;
    let mut roles: Vec<&str> = groups
        .iter()
        .map(|g| g["labels"]["node_role"].as_str().unwrap())
        .collect();
    roles.sort();
    assert_eq!(roles, ["master", "replica"]);
    for g in &groups {
        assert_eq!(g["targets"], json!([cfg.metrics.exporter_listen]), "{g}");
        assert_eq!(g["labels"]["instance_name"], inst["redisName"], "{g}");
        assert_eq!(
            g["labels"]["app_id"],
            common::main_app_id(&t).to_string(),
            "{g}"
        );
        assert_eq!(g["labels"]["shard"], "0", "{g}");
        let target = g["labels"]["__param_target"].as_str().unwrap();
        assert_eq!(
            g["labels"]["instance"].as_str(),
            target.strip_prefix("redis://"),
            "the node, not the exporter: {g}"
        );
    }

    // The exporter scrapes the master as Prometheus would, writes included.
    let master = groups
        .iter()
        .find(|g| g["labels"]["node_role"] == "master")
        .unwrap();
    let mut user = common::redis_conn(
        inst["wanIp"].as_str().unwrap(),
        inst["port"].as_u64().unwrap() as u16,
        PASSWORD,
    )
    .await
    .expect("the instance answers");
    for i in 0..7 {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async::<()>(&mut user)
            .await
            .unwrap();
    }
    let s = scrape_group(master).await;
    assert!(value(&s, "redis_connected_clients", &[]) >= 1.0);
    assert_eq!(value(&s, "redis_db_keys", &[("db", "db0")]), 7.0);
    assert_eq!(value(&s, "redis_connected_slaves", &[]), 1.0);

    // kill -9 of the exporter: the supervisor starts it again.
    let pid_file = t.data_dir().join("exporter/exporter.pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let s = scrape_group(master).await;
    assert_eq!(value(&s, "redis_db_keys", &[("db", "db0")]), 7.0);
    let again: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(again, pid, "a new exporter");

    // Destroyed (isolated, its nodes stopped): forgotten.
    Tc3::like(&v2)
        .ok("DestroyPrepaidInstance", json!({ "InstanceId": id }))
        .await;
    discovered(addr, &id, |g| g.is_empty()).await;
}

/// Kills the Prometheus it holds when dropped.
struct Prometheus(std::process::Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The result of an instant query `q` on Prometheus at `addr`.
async fn prom_query(addr: &str, q: &str) -> Vec<serde_json::Value> {
    let Ok(resp) = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/query"))
        .query(&[("query", q)])
        .send()
        .await
    else {
        return Vec::new();
    };
    let v: serde_json::Value = resp.json().await.unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_crsd_and_its_nodes_with_the_example_config() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = common::test_config(dir.path());
    cfg.metrics.exporter_listen = format!("127.0.0.1:{}", common::free_port());
    let t = TestCrsd::start_with(dir, cfg).await;
    let addr = t.running.as_ref().unwrap().metrics_addr.unwrap();
    let id = t.client().create(PASSWORD, 1).await.remove(0)["redisId"]
        .as_str()
        .unwrap()
        .to_string();

    // The example config as README shows it, with this crsd's listener and short intervals.
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/prometheus.yml"),
    )
    .expect("examples/prometheus.yml");
    assert_eq!(example.matches("127.0.0.1:9751").count(), 2, "{example}");
    let config = example
        .replace("127.0.0.1:9751", &addr.to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s")
        .replace("refresh_interval: 30s", "refresh_interval: 1s");
    let prom_dir = tempfile::tempdir().unwrap();
    let config_file = prom_dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).unwrap();
    let web = format!("127.0.0.1:{}", common::free_port());
    let log = std::fs::File::create(prom_dir.path().join("prometheus.log")).unwrap();
    let _prom = Prometheus(
        std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={web}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("Debian's prometheus (scripts/install-deps.sh --test installs it)"),
    );

    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut crsd_up, mut nodes) = (Vec::new(), Vec::new());
    while Instant::now() < deadline {
        crsd_up = prom_query(&web, "up{job=\"crsd\"} == 1").await;
        nodes = prom_query(&web, &format!("redis_up{{instance_id=\"{id}\"}} == 1")).await;
        if crsd_up.len() == 1 && nodes.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = std::fs::read_to_string(prom_dir.path().join("prometheus.log")).unwrap_or_default();
    assert_eq!(crsd_up.len(), 1, "crsd scraped: {crsd_up:?}\n{log}");
    assert_eq!(nodes.len(), 2, "both nodes scraped: {nodes:?}\n{log}");
    let mut roles: Vec<&str> = nodes
        .iter()
        .map(|n| n["metric"]["node_role"].as_str().unwrap_or_default())
        .collect();
    roles.sort();
    assert_eq!(roles, ["master", "replica"], "{nodes:?}");
    // crsd's own series are there too, with their labels.
    let created = prom_query(
        &web,
        "crsd_api_requests_total{dialect=\"v2\",action=\"CreateRedis\",code=\"0\"}",
    )
    .await;
    assert_eq!(created.len(), 1, "{created:?}");

    // Every series the example Grafana dashboard draws exists in this Prometheus.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../examples/grafana-dashboard.json"),
        )
        .expect("examples/grafana-dashboard.json"),
    )
    .expect("the dashboard is JSON");
    let mut names = BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("redis_") || word.starts_with("crsd_") {
                    names.insert(word.to_string());
                }
            }
        }
    }
    assert!(names.len() >= 10, "{names:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut missing: Vec<String> = names.iter().cloned().collect();
    while !missing.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for name in missing {
            if prom_query(&web, &format!("count({{__name__=\"{name}\"}})"))
                .await
                .is_empty()
            {
                still.push(name);
            }
        }
        missing = still;
        if !missing.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert!(
        missing.is_empty(),
        "the dashboard draws series nobody exports: {missing:?}"
    );
}
