//! Test fixtures: a master + replica pair of real redis-server processes in a tempdir, on
//! free ports, and a guard that SIGKILLs every process whose command line mentions the
//! tempdir when the test ends (also when it fails or panics).

#![allow(dead_code)]

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crsd_engine::{acl_sha256_hex, Engine, EngineConfig, NodeSpec, Role};
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use tempfile::TempDir;

pub const PASSWORD: &str = "user-password-1";

/// A port nobody listens on right now, below Linux's default ephemeral range (32768-60999),
/// where an outgoing connection of a parallel test could take it before redis-server binds
/// it; never the same one twice in this process.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let port = (10000 + (std::process::id() % 557 * 41 + n) % 22768) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The engine's root in these tests: each test's tempdir is an "instance" folder in it.
pub fn tests_root() -> PathBuf {
    let root = std::env::temp_dir().join("crsd-engine-tests");
    std::fs::create_dir_all(&root).expect("mkdir tests root");
    root
}

pub fn engine_config() -> EngineConfig {
    EngineConfig {
        redis_server: PathBuf::from("redis-server"),
        bind: "127.0.0.1".to_string(),
        start_timeout: Duration::from_secs(10),
        ceiling: None,
        root: tests_root(),
    }
}

/// Where the engine keeps a node's files (`<root>/<instance>/<node>`).
pub trait SpecDir {
    fn dir(&self) -> PathBuf;
}

impl SpecDir for NodeSpec {
    fn dir(&self) -> PathBuf {
        tests_root().join(&self.instance).join(&self.name)
    }
}

pub fn random_secret() -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A node named `name` in `root/name`; a replica if `master` is given.
pub fn node_spec(
    name: &str,
    port: u16,
    root: &Path,
    admin_secret: &str,
    repl_secret: &str,
    master: Option<(String, u16)>,
) -> NodeSpec {
    NodeSpec {
        name: format!("crs-test-{name}"),
        host: String::new(),
        // `root` is a tempdir inside `tests_root()`: the node's folder is `<root>/<name>`.
        instance: root
            .file_name()
            .and_then(|n| n.to_str())
            .expect("tempdir name")
            .to_string(),
        role: if master.is_some() {
            Role::Replica
        } else {
            Role::Master
        },
        port,
        maxmemory_mb: 32,
        default_password_sha256: acl_sha256_hex(PASSWORD),
        admin_user: "crsd".to_string(),
        admin_secret: admin_secret.to_string(),
        repl_user: "crsd-repl".to_string(),
        repl_secret: repl_secret.to_string(),
        master,
        params: Vec::new(),
        cluster: None,
    }
}

pub struct Pair {
    pub engine: Engine,
    pub master: NodeSpec,
    pub replica: NodeSpec,
    // Dropped after `Drop::drop` has killed the processes using it.
    pub tmp: TempDir,
}

impl Pair {
    pub fn new() -> Pair {
        let tmp = TempDir::new_in(tests_root()).expect("tempdir");
        let admin_secret = random_secret();
        let repl_secret = random_secret();
        let master_port = free_port();
        let master = node_spec(
            "master",
            master_port,
            tmp.path(),
            &admin_secret,
            &repl_secret,
            None,
        );
        let replica = node_spec(
            "replica",
            free_port(),
            tmp.path(),
            &admin_secret,
            &repl_secret,
            Some(("127.0.0.1".to_string(), master_port)),
        );
        Pair {
            engine: Engine::new(engine_config()),
            master,
            replica,
            tmp,
        }
    }

    /// Pids of live processes whose command line mentions this test's tempdir.
    pub fn processes(&self) -> Vec<u32> {
        processes_mentioning(self.tmp.path())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        kill_all_mentioning(self.tmp.path());
    }
}

pub fn processes_mentioning(path: &Path) -> Vec<u32> {
    let needle = path.as_os_str().as_encoded_bytes();
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || is_zombie_or_gone(pid) {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if cmd.windows(needle.len()).any(|w| w == needle) {
                out.push(pid);
            }
        }
    }
    out
}

pub fn is_zombie_or_gone(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    matches!(state, None | Some("Z" | "X"))
}

pub fn kill_all_mentioning(path: &Path) {
    let pids = processes_mentioning(path);
    for pid in &pids {
        // SAFETY: plain syscall; the pid was just seen running with our tempdir in argv.
        unsafe {
            libc::kill(*pid as libc::pid_t, libc::SIGKILL);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|p| !is_zombie_or_gone(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A client connection as the customer (`default` user) with `password`.
pub async fn user_conn(port: u16, password: &str) -> redis::RedisResult<MultiplexedConnection> {
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp("127.0.0.1".to_string(), port),
        redis: RedisConnectionInfo {
            password: Some(password.to_string()),
            ..Default::default()
        },
    };
    redis::Client::open(info)?
        .get_multiplexed_async_connection()
        .await
}

pub async fn dbsize(con: &mut MultiplexedConnection) -> redis::RedisResult<u64> {
    redis::cmd("DBSIZE").query_async(con).await
}

/// Polls `check` until it returns true or `timeout` passes; panics with `what` then.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts master and replica and waits for the replica to be in sync.
pub async fn start_pair(p: &Pair) -> (crsd_engine::NodeHandle, crsd_engine::NodeHandle) {
    let m = p.engine.start(&p.master).await.expect("start master");
    let r = p.engine.start(&p.replica).await.expect("start replica");
    wait_until("replica in sync", Duration::from_secs(10), || async {
        p.engine.replica_in_sync(&p.replica).await.unwrap_or(false)
    })
    .await;
    // A replica starts unfit for Sentinel's choice (replica-priority 0); crsd raises it once
    // the replica is in sync, as here.
    p.engine
        .set_replica_priority(&p.replica, 100)
        .await
        .expect("replica priority");
    (m, r)
}

/// Every key of db 0 with its value rendered as text (strings, hashes, lists, sets), for
/// comparing whole data sets.
pub async fn dataset(
    con: &mut MultiplexedConnection,
) -> redis::RedisResult<std::collections::BTreeMap<String, String>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query_async(con)
            .await?;
        keys.extend(batch);
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let mut out = std::collections::BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(con).await?;
        let value = match kind.as_str() {
            "string" => redis::cmd("GET").arg(&key).query_async(con).await?,
            "hash" => {
                let mut v: Vec<(String, String)> =
                    redis::cmd("HGETALL").arg(&key).query_async(con).await?;
                v.sort();
                format!("{v:?}")
            }
            "list" => {
                let v: Vec<String> = redis::cmd("LRANGE")
                    .arg(&key)
                    .arg(0)
                    .arg(-1)
                    .query_async(con)
                    .await?;
                format!("{v:?}")
            }
            "set" => {
                let mut v: Vec<String> = redis::cmd("SMEMBERS").arg(&key).query_async(con).await?;
                v.sort();
                format!("{v:?}")
            }
            other => panic!("dataset: key {key} has unsupported type {other}"),
        };
        out.insert(key, format!("{kind}:{value}"));
    }
    Ok(out)
}

/// Starts a plain redis-server (no password, no AOF, no crsd config) in `root/name` that
/// loads a copy of `rdb`, and returns a connection once it answers PING (i.e. has loaded
/// the file). Its command line names `root`, so a `Pair` whose tempdir is `root` kills it.
pub async fn load_rdb_in_scratch_server(
    root: &Path,
    name: &str,
    rdb: &Path,
) -> MultiplexedConnection {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).expect("mkdir scratch");
    std::fs::copy(rdb, dir.join("copy.rdb")).expect("copy rdb");
    let port = free_port();
    let conf = dir.join("scratch.conf");
    std::fs::write(
        &conf,
        format!(
            "bind 127.0.0.1\nport {port}\ndir \"{}\"\ndbfilename \"copy.rdb\"\n\
             appendonly no\nsave \"\"\ndaemonize no\nlogfile \"{}\"\n\
             set-proc-title no\n",
            dir.display(),
            dir.join("scratch.log").display()
        ),
    )
    .expect("write scratch.conf");
    let mut child = std::process::Command::new("redis-server")
        .arg(&conf)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn scratch redis-server");
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).expect("client");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut con) = client.get_multiplexed_async_connection().await {
            if let Ok(pong) = redis::cmd("PING").query_async::<String>(&mut con).await {
                if pong == "PONG" {
                    // Reaped by this thread once `kill_all_mentioning(root)` kills it (the
                    // config keeps the command line naming `root`: set-proc-title no).
                    std::thread::spawn(move || child.wait());
                    return con;
                }
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(dir.join("scratch.log")).unwrap_or_default();
            panic!("scratch redis-server exited with {status}:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "scratch redis-server did not load {}",
            rdb.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
