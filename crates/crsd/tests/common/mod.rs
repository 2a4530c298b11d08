//! Test harness: a real crsd (in-process, real HTTP on an ephemeral port, real SQLite file,
//! real redis-server processes) with an isolated data dir and port range per test, and a v2
//! client that signs like the public SDK. Every redis-server a test started is killed when the
//! harness drops, even when the test fails.

#![allow(dead_code)]

pub mod cluster;
pub mod daemon;
pub mod tc3;

use base64::Engine as _;
use crsd::config::Config;
use crsd_core::clock::OffsetClock;
use hmac::{Hmac, Mac};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct TestCrsd {
    pub running: Option<crsd::server::Running>,
    pub dir: tempfile::TempDir,
    pub clock: Arc<OffsetClock>,
    pub url: String,
    pub secret_id: String,
    pub secret_key: String,
    pub config: Config,
}

static NONCE: AtomicU64 = AtomicU64::new(1);

/// A port range no other test of this run uses (tests run in parallel), below Linux's
/// default ephemeral range (32768-60999): there an outgoing connection of a parallel test
/// could hold an instance port the moment its redis-server binds it.
pub fn port_range(size: u16) -> (u16, u16) {
    const LOW: u32 = 10000;
    const EPHEMERAL: u32 = 32768;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let slots = (EPHEMERAL - LOW) / u32::from(size);
    let n = NEXT.fetch_add(1, Ordering::SeqCst) as u32;
    let slot = (std::process::id() % slots * 37 + n) % slots;
    let base = (LOW + slot * u32::from(size)) as u16;
    (base, base + size - 1)
}

/// A port no listener uses now, above the ranges the harness hands to instances and, on
/// Linux's default, above the ephemeral range; never the same one twice in this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = 61000 + ((std::process::id() % 97) * 41 + n * 7) % 4500;
        let port = port as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub fn test_config(dir: &Path) -> Config {
    let mut cfg = Config {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    let (lo, hi) = port_range(40);
    cfg.instances.port_min = lo;
    cfg.instances.port_max = hi;
    // Creates start their own nodes; the warm pool's tests turn it on.
    cfg.instances.warm_nodes = 0;
    cfg.instances.warm_cluster_nodes = 0;
    cfg.loops.supervise_every_ms = 200;
    cfg.loops.expiry_every_secs = 3600;
    // Many crsds run at once: any free port, never the default one.
    cfg.metrics.listen = "127.0.0.1:0".into();
    // The exporter needs a fixed port: only the tests of per-node metrics give it one.
    cfg.metrics.exporter_listen = String::new();
    cfg.ha.sentinel_ports = vec![free_port(), free_port(), free_port()];
    // Several crsds share two cores while tests run: a master slowed down for half a second
    // must not be failed over (the default, 500, is measured by `make bench-failover`).
    cfg.ha.down_after_ms = 1500;
    cfg
}

impl TestCrsd {
    pub async fn start() -> TestCrsd {
        let dir = tempfile::tempdir().unwrap();
        let cfg = test_config(dir.path());
        TestCrsd::start_with(dir, cfg).await
    }

    /// A crsd on a fixed port, so that [`TestCrsd::restart`] keeps its address (and the Host
    /// clients sign with).
    pub async fn start_restartable() -> TestCrsd {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = test_config(dir.path());
        cfg.listen = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        TestCrsd::start_with(dir, cfg).await
    }

    pub async fn start_with(dir: tempfile::TempDir, cfg: Config) -> TestCrsd {
        // crsd's warnings and errors (an internal error's detail, a failed task) go to the
        // test's captured output, which cargo prints when the test fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_ansi(false)
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn".into()),
            )
            .try_init();
        let clock = Arc::new(OffsetClock::new());
        let running = crsd::server::start(cfg.clone(), clock.clone())
            .await
            .expect("crsd starts");
        let created = running
            .bootstrap
            .clone()
            .expect("first start makes an account");
        // `listen` speaks HTTPS when a certificate is set and no HTTPS listener of its own is.
        let scheme = if cfg.tls.cert.is_some() && cfg.tls.listen.is_empty() {
            "https"
        } else {
            "http"
        };
        let url = format!("{scheme}://{}", running.addr);
        TestCrsd {
            running: Some(running),
            dir,
            clock,
            url,
            secret_id: created.secret_id,
            secret_key: created.secret_key,
            config: cfg,
        }
    }

    pub fn client(&self) -> V2Client {
        V2Client {
            url: self.url.clone(),
            host: self.url.split("://").nth(1).unwrap().to_string(),
            secret_id: self.secret_id.clone(),
            secret_key: self.secret_key.clone(),
            clock: self.clock.clone(),
            method: "GET",
            sha256: true,
            http: reqwest::Client::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir.clone()
    }

    /// Stops crsd and starts it again on the same data dir and config (see
    /// [`TestCrsd::start_restartable`] for the same address).
    pub async fn restart(&mut self) {
        self.stop().await;
        let running = crsd::server::start(self.config.clone(), self.clock.clone())
            .await
            .expect("crsd starts again");
        assert!(running.bootstrap.is_none(), "a restart makes no account");
        self.running = Some(running);
    }

    /// Stops crsd (instances keep running, as in production).
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown(Duration::from_secs(5)).await;
        }
    }
}

impl Drop for TestCrsd {
    fn drop(&mut self) {
        // Stop the supervisor first, or it would start the processes killed below again.
        if let Some(r) = &self.running {
            r.stop_loops();
            std::thread::sleep(Duration::from_millis(400));
        }
        kill_redis_under(&self.config.data_dir);
    }
}

/// Kills every process crsd started for `dir` (redis-servers, sentinels, the proxy and its
/// workers): those whose command line names a file under it.
pub fn kill_redis_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            if pid == std::process::id() as i32 {
                continue;
            }
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            let ours = [
                "redis-server",
                "redis-sentinel",
                "haproxy",
                "prometheus-redis-exporter",
            ]
            .iter()
            .any(|p| cmd.contains(p));
            if ours && cmd.contains(&needle) {
                unsafe_kill(pid);
            }
        }
    }
    remove_node_cgroups(dir);
}

/// Removes the cgroups crsd made for the nodes under `data_dir` (`<own cgroup>/crsd/<node>`
/// per controller), once the killed processes have left them.
pub fn remove_node_cgroups(data_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(data_dir.join("instances")) else {
        return;
    };
    // A node's cgroup is named by its node id, the name of its folder in the instance's; a
    // node started by the previous release has its cgroup under that release's name.
    let mut nodes = Vec::new();
    for inst in entries.flatten() {
        let id = inst.file_name().to_string_lossy().into_owned();
        nodes.extend([format!("{id}-master"), format!("{id}-replica")]);
        for node in std::fs::read_dir(inst.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if node.file_type().is_ok_and(|t| t.is_dir()) {
                nodes.push(node.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let groups = crsd_cgroups();
    let deadline = Instant::now() + Duration::from_secs(3);
    for group in groups {
        for node in &nodes {
            let dir = group.join(node);
            while dir.exists() && std::fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // Leaves nothing in the test runner's cgroup once the last test is done (a test still
        // running keeps it busy; crsd makes it again when it needs it).
        let _ = std::fs::remove_dir(&group);
    }
}

/// The folders crsd makes node cgroups in (`<own cgroup>/crsd` per controller, v1 or v2),
/// whether they exist or not.
pub fn crsd_cgroups() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut groups = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            groups.push(PathBuf::from("/sys/fs/cgroup").join(path).join("crsd"));
        }
        for c in ["memory", "cpu"] {
            if controllers.split(',').any(|x| x == c) {
                for mount in [c, controllers] {
                    groups.push(
                        PathBuf::from("/sys/fs/cgroup")
                            .join(mount)
                            .join(path)
                            .join("crsd"),
                    );
                }
            }
        }
    }
    groups
}

/// The cgroup folders of the node `node` that exist now.
pub fn node_cgroups(node: &str) -> Vec<PathBuf> {
    crsd_cgroups()
        .into_iter()
        .map(|g| g.join(node))
        .filter(|d| d.is_dir())
        .collect()
}

fn unsafe_kill(pid: i32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[derive(Clone)]
pub struct V2Client {
    pub url: String,
    /// The host the client signs with (what it sends as Host).
    pub host: String,
    pub secret_id: String,
    pub secret_key: String,
    pub clock: Arc<OffsetClock>,
    pub method: &'static str,
    pub sha256: bool,
    pub http: reqwest::Client,
}

pub fn sign_v2(
    method: &str,
    host: &str,
    params: &[(String, String)],
    key: &str,
    sha256: bool,
) -> String {
    let mut sorted: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "Signature")
        .map(|(k, v)| (k.replace('_', "."), v.clone()))
        .collect();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let msg = format!("{method}{host}/v2/index.php?{}", query.join("&"));
    let raw = if sha256 {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).unwrap();
        m.update(msg.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    base64::engine::general_purpose::STANDARD.encode(raw)
}

impl V2Client {
    /// The common parameters a client adds, signed.
    pub fn signed(&self, action: &str, params: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let nonce = NONCE.fetch_add(1, Ordering::SeqCst) + (std::process::id() as u64) * 1_000_000;
        let ts = crsd_core::clock::Clock::now(&*self.clock).timestamp();
        all.push(("Action".into(), action.into()));
        all.push(("Region".into(), "gz".into()));
        all.push(("SecretId".into(), self.secret_id.clone()));
        all.push(("Nonce".into(), nonce.to_string()));
        all.push(("Timestamp".into(), ts.to_string()));
        all.push((
            "SignatureMethod".into(),
            if self.sha256 {
                "HmacSHA256"
            } else {
                "HmacSHA1"
            }
            .into(),
        ));
        let sig = sign_v2(self.method, &self.host, &all, &self.secret_key, self.sha256);
        all.push(("Signature".into(), sig));
        all
    }

    pub async fn send(&self, params: &[(String, String)]) -> Value {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        let url = format!("{}/v2/index.php", self.url);
        let resp = if self.method == "POST" {
            self.http
                .post(&url)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        } else {
            self.http.get(format!("{url}?{body}")).send().await
        }
        .expect("request reaches crsd");
        assert_eq!(resp.status(), 200, "v2 always answers 200");
        resp.json().await.expect("a JSON body")
    }

    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Value {
        let signed = self.signed(action, params);
        self.send(&signed).await
    }

    /// Calls and asserts success.
    pub async fn ok(&self, action: &str, params: &[(&str, &str)]) -> Value {
        let v = self.call(action, params).await;
        assert_eq!(v["code"], 0, "{action} failed: {v}");
        assert_eq!(v["codeDesc"], "Success", "{v}");
        v
    }

    /// Calls and asserts the module error code in `message` (`(code)...`) and the common code.
    pub async fn err(
        &self,
        action: &str,
        params: &[(&str, &str)],
        code: i64,
        module: Option<i64>,
    ) -> Value {
        let v = self.call(action, params).await;
        assert_eq!(v["code"], code, "{action}: {v}");
        if let Some(m) = module {
            let msg = v["message"].as_str().unwrap_or_default();
            assert!(
                msg.starts_with(&format!("({m})")),
                "{action}: expected ({m}) in {v}"
            );
        }
        v
    }

    /// Waits until DescribeTaskInfo says the task ended; returns its status.
    pub async fn wait_task(&self, id: i64) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self
                .ok("DescribeTaskInfo", &[("requestId", &id.to_string())])
                .await;
            let s = v["data"]["status"].as_i64().unwrap();
            if s == 2 || s == 3 || s == -1 {
                return s;
            }
            assert!(Instant::now() < deadline, "task {id} did not end");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates `n` instances (1024 MB, 1 month) and waits until the deal is delivered.
    pub async fn create(&self, password: &str, n: i64) -> Vec<Value> {
        let v = self
            .ok(
                "CreateRedis",
                &[
                    ("zoneId", "100002"),
                    ("typeId", "2"),
                    ("memSize", "1024"),
                    ("goodsNum", &n.to_string()),
                    ("period", "1"),
                    ("password", password),
                ],
            )
            .await;
        let deal = v["data"]["dealId"].as_str().unwrap().to_string();
        let ids = self.wait_deal(&deal).await;
        let mut out = Vec::new();
        for id in ids {
            out.push(self.describe_one(&id).await);
        }
        out
    }

    pub async fn wait_deal(&self, deal: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self
                .ok("DescribeRedisDealDetail", &[("dealIds.0", deal)])
                .await;
            let d = &v["dealDetails"][0];
            let status = d["status"].as_i64().unwrap();
            assert_ne!(status, 5, "deal failed: {v}");
            if status == 4 {
                return d["goodsDetail"]["redisIds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect();
            }
            assert!(Instant::now() < deadline, "deal {deal} not delivered: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn describe_one(&self, id: &str) -> Value {
        let v = self
            .ok(
                "DescribeRedis",
                &[("limit", "10"), ("offset", "0"), ("redisId", id)],
            )
            .await;
        assert_eq!(v["totalCount"], 1, "{v}");
        v["data"]["redisSet"][0].clone()
    }
}

/// A connection to an instance as its user (the `default` ACL user).
pub async fn redis_conn(
    host: &str,
    port: u16,
    password: &str,
) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    let url = format!("redis://:{}@{host}:{port}/", urlencode(password));
    let client = redis::Client::open(url)?;
    client.get_multiplexed_async_connection().await
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// `maxmemory` as the instance's user can see it (INFO memory; CONFIG is not the user's).
pub async fn info_maxmemory(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("maxmemory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory has maxmemory")
}

/// A connection as crsd's own ACL user on an instance's master (for what users may not do).
pub async fn admin_conn(
    svc: &crsd_service::Service,
    id: &str,
) -> redis::aio::MultiplexedConnection {
    let inst = svc.store().instance(id).await.unwrap().expect("instance");
    let url = format!(
        "redis://{}:{}@{}:{}/",
        crsd_service::ADMIN_USER,
        inst.admin_secret,
        inst.vip,
        inst.port()
    );
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The running crsd's service.
/// The local node runtime as the crsd under test configured it, for what only it can tell
/// (pids, cgroups). Cheap: it addresses the same nodes as crsd's own.
#[allow(dead_code)]
pub fn engine(crsd: &TestCrsd) -> crsd_engine::Engine {
    crsd_engine::Engine::new(crsd::server::engine_config(&crsd.config))
}

/// The port of the instance's first replica.
#[allow(dead_code)]
pub fn replica_port(inst: &crsd_core::model::Instance) -> u16 {
    inst.replicas().next().expect("a replica").port
}

/// The specs of the instance's master and first replica.
#[allow(dead_code)]
pub fn master_and_replica(
    svc: &crsd_service::Service,
    inst: &crsd_core::model::Instance,
) -> (crsd_engine::NodeSpec, crsd_engine::NodeSpec) {
    let master = svc.master_spec(inst).expect("a master");
    let replica = svc.replica_specs(inst).remove(0);
    (master, replica)
}

pub fn service(crsd: &TestCrsd) -> Arc<crsd_service::Service> {
    crsd.running.as_ref().unwrap().service.clone()
}

/// The app id of the account made on first start.
pub fn main_app_id(crsd: &TestCrsd) -> i64 {
    crsd.running
        .as_ref()
        .unwrap()
        .bootstrap
        .as_ref()
        .unwrap()
        .app_id
}

pub async fn balance(crsd: &TestCrsd, app_id: i64) -> i64 {
    service(crsd).balance(app_id).await.unwrap()
}

/// A second account with `balance` cents, a client that signs with its keys, and its app id.
pub async fn other_account(crsd: &TestCrsd, balance: i64) -> (V2Client, i64) {
    let created = service(crsd)
        .create_account(crsd_service::NewAccount {
            name: "other".into(),
            balance,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut c = crsd.client();
    c.secret_id = created.secret_id;
    c.secret_key = created.secret_key;
    (c, created.app_id)
}

/// A `YYYY-MM-DD HH:MM:SS` field in crsd's time zone.
pub fn parse_time(crsd: &TestCrsd, s: &Value) -> chrono::DateTime<chrono::Utc> {
    let s = s.as_str().unwrap_or_else(|| panic!("a time string: {s}"));
    crsd_core::timefmt::parse(s, service(crsd).time_zone())
        .unwrap_or_else(|| panic!("YYYY-MM-DD HH:MM:SS: {s}"))
}
