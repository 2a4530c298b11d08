//! A hostile tenant against the engine: the kernel memory ceiling of a node (Lua's heap is
//! not in `maxmemory`), live resizes of that ceiling, client eviction of a slow reader, and the
//! commands the customer's user may not run. Real redis-server processes in real cgroups, with
//! small sizes (nodes of 32-64 MB, ceilings of about 100 MB).

mod support;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crsd_engine::{CeilingConfig, Engine, EngineConfig, NodeSpec};
use support::{free_port, node_spec, user_conn, wait_until, Pair, SpecDir, PASSWORD};

const MB: u64 = 1024 * 1024;

/// A group of its own per test (tests run in parallel in one process, under one cgroup),
/// removed with whatever it holds when the test ends.
struct Group {
    name: String,
}

impl Group {
    fn new() -> Group {
        static N: AtomicU32 = AtomicU32::new(0);
        Group {
            name: format!(
                "crsd-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ),
        }
    }

    fn config(&self) -> CeilingConfig {
        CeilingConfig {
            group: self.name.clone(),
            memory_headroom_percent: 50,
            memory_headroom_min_mb: 64,
            cpu_weight: 100,
            cpu_quota_percent: 100,
        }
    }

    /// This group's folders, one per controller crsd uses.
    fn dirs(&self) -> Vec<PathBuf> {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut out = Vec::new();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next(), parts.next(), parts.next());
            let (Some(controllers), Some(path)) = (controllers, path) else {
                continue;
            };
            let path = path.trim_start_matches('/');
            for c in ["memory", "cpu"] {
                if controllers.split(',').any(|x| x == c) {
                    let mount = if controllers == c {
                        format!("/sys/fs/cgroup/{c}")
                    } else {
                        format!("/sys/fs/cgroup/{controllers}")
                    };
                    out.push(PathBuf::from(mount).join(path).join(&self.name));
                }
            }
            if controllers.is_empty() && line.starts_with("0::") {
                out.push(PathBuf::from("/sys/fs/cgroup").join(path).join(&self.name));
            }
        }
        out
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        for dir in self.dirs() {
            if let Ok(entries) = std::fs::read_dir(&dir) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

/// A master + replica pair whose engine puts every node under a ceiling. The group is
/// dropped after the pair (whose drop kills the processes).
struct Confined {
    pair: Pair,
    _group: Group,
}

fn confined() -> Confined {
    let group = Group::new();
    let mut pair = Pair::new();
    pair.engine = Engine::new(EngineConfig {
        ceiling: Some(group.config()),
        ..support::engine_config()
    });
    assert!(
        pair.engine.ceiling_version().is_some(),
        "this host offers no usable cgroup (see crsd's warning); the ceiling cannot be tested"
    );
    Confined {
        pair,
        _group: group,
    }
}

/// A second master on the same engine (a neighbour instance).
fn neighbour(p: &Pair) -> NodeSpec {
    node_spec(
        "neighbour",
        free_port(),
        p.tmp.path(),
        &p.master.admin_secret,
        &p.master.repl_secret,
        None,
    )
}

fn cgroup_line(pid: u32, controller: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("proc cgroup");
    text.lines()
        .find(|l| {
            l.split(':').nth(1).is_some_and(|c| {
                c.split(',').any(|x| x == controller) || (c.is_empty() && controller.is_empty())
            })
        })
        .unwrap_or_default()
        .to_string()
}

fn read_u64(path: PathBuf) -> u64 {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let t = text.trim();
    if t == "max" {
        u64::MAX
    } else {
        t.parse().expect("number")
    }
}

#[tokio::test]
async fn a_node_runs_under_maxmemory_plus_headroom_and_a_resize_moves_the_ceiling_live() {
    let c = confined();
    let p = &c.pair;
    let m = p.engine.start(&p.master).await.expect("start");
    let status = p.engine.ceiling_status(&p.master).expect("cgroup made");
    // maxmemory 32 MB + max(50 %, 64 MB).
    assert_eq!(status.limit_bytes, (32 + 64) * MB);
    let dir = status.memory_dir.clone();
    assert!(dir.ends_with(format!("{}/{}", c._group.name, p.master.name)));
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).expect("procs");
    assert!(
        procs.lines().any(|l| l.trim() == m.pid.to_string()),
        "pid {} in {procs:?}",
        m.pid
    );
    let v1 = p.engine.ceiling_version() == Some(1);
    if v1 {
        assert!(cgroup_line(m.pid, "memory").ends_with(&format!("/{}", p.master.name)));
        assert!(cgroup_line(m.pid, "cpu").ends_with(&format!("/{}", p.master.name)));
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            assert_eq!(read_u64(memsw), (32 + 64) * MB, "swap cannot extend it");
        }
    } else {
        assert_eq!(read_u64(dir.join("memory.swap.max")), 0);
    }

    // Up: 200 MB + 100 MB; down: 100 MB + 64 MB. Same process all along.
    p.engine.set_maxmemory(&p.master, 200).await.expect("grow");
    assert_eq!(
        p.engine.ceiling_status(&p.master).unwrap().limit_bytes,
        300 * MB
    );
    let maxmemory = p.engine.get_param(&p.master, "maxmemory").await.unwrap();
    assert_eq!(maxmemory, (200 * MB).to_string());
    p.engine
        .set_maxmemory(&p.master, 100)
        .await
        .expect("shrink");
    assert_eq!(
        p.engine.ceiling_status(&p.master).unwrap().limit_bytes,
        164 * MB
    );
    if v1 {
        let memsw = dir.join("memory.memsw.limit_in_bytes");
        if memsw.exists() {
            assert_eq!(read_u64(memsw), 164 * MB);
        }
    }
    assert!(p.engine.is_alive(&p.master));
    assert_eq!(p.processes(), vec![m.pid]);

    // Deleting the node removes its cgroup.
    p.engine.destroy(&p.master).await.expect("destroy");
    assert!(!dir.exists(), "{} still there", dir.display());
    assert!(p.engine.ceiling_status(&p.master).is_none());
}

#[tokio::test]
async fn a_lua_table_past_the_ceiling_kills_only_that_node_and_the_kill_is_counted() {
    let c = confined();
    let p = &c.pair;
    let mut spec = p.master.clone();
    spec.maxmemory_mb = 64;
    let other = neighbour(p);
    let m = p.engine.start(&spec).await.expect("start");
    let n = p.engine.start(&other).await.expect("start neighbour");
    let limit = p.engine.ceiling_status(&spec).unwrap().limit_bytes;
    assert_eq!(limit, 128 * MB);

    let mut mine = user_conn(spec.port, PASSWORD).await.expect("connect");
    let _: () = redis::cmd("SET")
        .arg("kept")
        .arg("1")
        .query_async(&mut mine)
        .await
        .unwrap();
    let mut theirs = user_conn(other.port, PASSWORD)
        .await
        .expect("connect neighbour");
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut theirs)
            .await
            .unwrap();
    }
    assert_eq!(p.engine.take_oom_kills(&spec).unwrap(), 0);

    // ~3 million entries of ~110 bytes: far more than the ceiling, and far less than the host.
    let probe = "local t={} for i=1,tonumber(ARGV[1]) do t[i]=string.rep('x',100)..i end return #t";
    let reply: redis::RedisResult<i64> = redis::cmd("EVAL")
        .arg(probe)
        .arg(0)
        .arg(3_000_000)
        .query_async(&mut mine)
        .await;
    assert!(reply.is_err(), "the script finished: {reply:?}");
    wait_until("the node to be gone", Duration::from_secs(20), || async {
        !p.engine.is_alive(&spec)
    })
    .await;

    let status = p.engine.ceiling_status(&spec).unwrap();
    eprintln!(
        "peak {:?} of limit {}",
        status.peak_bytes, status.limit_bytes
    );
    if let Some(peak) = status.peak_bytes {
        assert!(peak <= limit, "peak {peak} above the ceiling {limit}");
    }
    assert!(status.oom_kills >= 1, "{status:?}");
    assert_eq!(p.engine.take_oom_kills(&spec).unwrap(), status.oom_kills);
    assert_eq!(p.engine.take_oom_kills(&spec).unwrap(), 0, "reported once");

    // The neighbour did not notice.
    assert!(p.engine.is_alive(&other));
    assert_eq!(p.engine.adopt(&other).await.unwrap().unwrap().pid, n.pid);
    assert_eq!(support::dbsize(&mut theirs).await.unwrap(), 100);

    // Back from its AOF, in its cgroup again.
    let back = p.engine.start(&spec).await.expect("restart");
    assert_ne!(back.pid, m.pid);
    let mut mine = user_conn(spec.port, PASSWORD).await.expect("connect");
    let kept: String = redis::cmd("GET")
        .arg("kept")
        .query_async(&mut mine)
        .await
        .unwrap();
    assert_eq!(kept, "1");
    let procs = std::fs::read_to_string(status.memory_dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l.trim() == back.pid.to_string()));
}

#[tokio::test]
async fn the_customer_may_not_migrate_nor_administer_the_server() {
    let p = Pair::new();
    p.engine.start(&p.master).await.expect("start");
    let mut con = user_conn(p.master.port, PASSWORD).await.expect("connect");
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query_async(&mut con)
        .await
        .unwrap();

    // Somewhere MIGRATE could connect to.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    target.set_nonblocking(true).unwrap();
    let port = target.local_addr().unwrap().port();
    let port_s = port.to_string();

    let refused: &[&[&str]] = &[
        &["MIGRATE", "127.0.0.1", &port_s, "k", "0", "1000"],
        &[
            "MIGRATE",
            "127.0.0.1",
            &port_s,
            "",
            "0",
            "1000",
            "AUTH",
            "x",
            "KEYS",
            "k",
        ],
        &["REPLICAOF", "127.0.0.1", &port_s],
        &["SLAVEOF", "127.0.0.1", &port_s],
        &["DEBUG", "SLEEP", "0"],
        &["MODULE", "LIST"],
        &["CONFIG", "SET", "maxmemory", "0"],
        &["CONFIG", "GET", "maxmemory"],
        &["SHUTDOWN", "NOSAVE"],
        &["MONITOR"],
        &["ACL", "SETUSER", "crsd", "off"],
        &["CLIENT", "NO-EVICT", "on"],
        &["CLIENT", "KILL", "ID", "1"],
        &["BGSAVE"],
        &["FAILOVER"],
        &["RESTORE-ASKING", "x", "0", "y"],
    ];
    for args in refused {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        let err = cmd
            .query_async::<redis::Value>(&mut con)
            .await
            .expect_err(&format!("{args:?} must be refused"));
        // DEBUG and MODULE are off for every user (`enable-*-command no`): refused before
        // the ACL is asked.
        let off = matches!(args[0], "DEBUG" | "MODULE") && err.to_string().contains("not allowed");
        assert!(err.code() == Some("NOPERM") || off, "{args:?}: {err:?}");
    }
    assert!(
        matches!(target.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the server connected out"
    );

    // What users of a cloud Redis expect stays.
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(info.contains("used_memory:"));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(keys, vec!["k".to_string()]);
    let dump: Vec<u8> = redis::cmd("DUMP")
        .arg("k")
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("RESTORE")
        .arg("k2")
        .arg(0)
        .arg(dump)
        .query_async(&mut con)
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut con).await.unwrap();
    assert_eq!(support::dbsize(&mut con).await.unwrap(), 0);
}

#[tokio::test]
async fn a_running_node_of_an_older_version_gets_the_rules_and_its_cgroup_without_a_restart() {
    let c = confined();
    let p = &c.pair;
    let m = p.engine.start(&p.master).await.expect("start");
    let mut admin = p.engine.admin_connection(&p.master).await.unwrap();
    // What an older crsd left: the customer's user with only `-@admin`, the process outside
    // any ceiling (in crsd's own cgroup).
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("default")
        .arg("nocommands")
        .arg("+@all")
        .arg("-@admin")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = redis::cmd("CONFIG")
        .arg("REWRITE")
        .query_async(&mut admin)
        .await
        .unwrap();
    let dir = p.engine.ceiling_status(&p.master).unwrap().memory_dir;
    let own = dir.parent().unwrap().parent().unwrap().to_path_buf();
    std::fs::write(own.join("cgroup.procs"), m.pid.to_string()).expect("move out");
    if p.engine.ceiling_version() == Some(1) {
        let cpu_own = PathBuf::from("/sys/fs/cgroup/cpu").join(
            cgroup_line(std::process::id(), "cpu")
                .splitn(3, ':')
                .nth(2)
                .unwrap()
                .trim_start_matches('/'),
        );
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(cpu_own.join("cgroup.procs"))
            .unwrap();
        write!(f, "{}", m.pid).unwrap();
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(!procs.lines().any(|l| l.trim() == m.pid.to_string()));
    let mut con = user_conn(p.master.port, PASSWORD).await.unwrap();
    let before = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(free_port())
        .arg("nokey")
        .arg(0)
        .arg(100)
        .query_async::<redis::Value>(&mut con)
        .await;
    assert!(
        !matches!(&before, Err(e) if e.code() == Some("NOPERM")),
        "the old rules allowed MIGRATE: {before:?}"
    );

    assert_eq!(p.engine.conform(&p.master).await.unwrap(), Some(m.pid));

    let err = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(free_port())
        .arg("nokey")
        .arg(0)
        .arg(100)
        .query_async::<redis::Value>(&mut con)
        .await
        .expect_err("refused now");
    assert_eq!(err.code(), Some("NOPERM"));
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(procs.lines().any(|l| l.trim() == m.pid.to_string()));
    // Persisted: a restart of this redis-server keeps the rules.
    let conf = std::fs::read_to_string(p.master.dir().join("redis.conf")).unwrap();
    let user_line = conf
        .lines()
        .find(|l| l.starts_with("user default "))
        .expect("user line");
    // (redis orders single commands by its hash table, not as given)
    let rules: Vec<&str> = user_line.split_whitespace().collect();
    for rule in ["+@all", "-@admin", "-migrate", "-restore-asking"] {
        assert!(rules.contains(&rule), "{user_line}");
    }
    assert_eq!(p.processes(), vec![m.pid], "no restart");
}

#[tokio::test]
async fn a_slow_reader_is_disconnected_instead_of_failing_every_write() {
    let p = Pair::new();
    let mut spec = p.master.clone();
    spec.maxmemory_mb = 64;
    p.engine.start(&spec).await.expect("start");
    let mut con = user_conn(spec.port, PASSWORD).await.unwrap();
    let big = "v".repeat(MB as usize);
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&big)
        .query_async(&mut con)
        .await
        .unwrap();
    for i in 0..1000 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query_async(&mut con)
            .await
            .unwrap();
    }

    // 150 GETs of the 1 MB value whose replies are never read: 150 MB of output buffer
    // against a 64 MB maxmemory.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", spec.port)).unwrap();
    let mut req = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{PASSWORD}\r\n", PASSWORD.len());
    for _ in 0..150 {
        req.push_str("*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n");
    }
    slow.write_all(req.as_bytes()).unwrap();

    let mut admin = p.engine.admin_connection(&spec).await.unwrap();
    wait_until(
        "the slow reader to be evicted",
        Duration::from_secs(20),
        || {
            let mut admin = admin.clone();
            async move {
                let info: String = redis::cmd("INFO")
                    .arg("stats")
                    .query_async(&mut admin)
                    .await
                    .unwrap_or_default();
                info.lines()
                    .find_map(|l| l.strip_prefix("evicted_clients:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .is_some_and(|n| n >= 1)
            }
        },
    )
    .await;
    for i in 0..200 {
        let _: () = redis::cmd("SET")
            .arg(format!("w{i}"))
            .arg("x")
            .query_async(&mut con)
            .await
            .unwrap_or_else(|e| panic!("write {i} refused: {e}"));
    }
    assert_eq!(support::dbsize(&mut con).await.unwrap(), 1 + 1000 + 200);
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert!(info.contains("evicted_keys:0"), "nothing evicted");
    drop(slow);
}
