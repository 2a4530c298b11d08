//! The host's HAProxy in front of a real master + replica: writes follow the master through a
//! role swap, a reload keeps established connections and refuses no new one, a `kill -9` is
//! repaired by `ensure_running`. Real processes only; `support::Pair` kills every process whose
//! command line names the test's tempdir (haproxy's does: its config is in there).

mod support;

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::slice;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crsd_engine::{
    internal_secret, EngineError, Frontend, NodeSpec, Proxy, ProxyConfig, Server, CHECK_USER,
};
use support::{free_port, start_pair, user_conn, wait_until, Pair, PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a client waits for one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

fn proxy_for(p: &Pair) -> Proxy {
    Proxy::new(ProxyConfig {
        root: p.tmp.path().join("haproxy"),
        ..ProxyConfig::default()
    })
}

fn frontend(p: &Pair, name: &str, port: u16, nodes: &[&NodeSpec]) -> Frontend {
    Frontend {
        name: name.to_string(),
        port,
        check_user: CHECK_USER.to_string(),
        check_secret: internal_secret(&p.master.admin_secret, CHECK_USER),
        servers: nodes
            .iter()
            .map(|n| Server {
                name: n.name.clone(),
                host: "127.0.0.1".to_string(),
                port: n.port,
            })
            .collect(),
    }
}

/// Makes `new` the master and `old` its replica, as crsd's admin user.
async fn swap_roles(p: &Pair, new: &NodeSpec, old: &NodeSpec) {
    let mut con = p.engine.admin_connection(new).await.expect("admin new");
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<()>(&mut con)
        .await
        .expect("REPLICAOF NO ONE");
    let mut con = p.engine.admin_connection(old).await.expect("admin old");
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(new.port)
        .query_async::<()>(&mut con)
        .await
        .expect("REPLICAOF new");
}

/// SETs `key` through the proxy's `port` with a fresh connection each try (a write that
/// reaches a replica fails with READONLY) until one succeeds; how long that took.
async fn first_write(port: u16, key: &str, value: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        let attempt = async {
            let mut con = user_conn(port, PASSWORD).await?;
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .query_async::<()>(&mut con)
                .await
        };
        let last = match tokio::time::timeout(REPLY_TIMEOUT, attempt).await {
            Ok(Ok(())) => return t0.elapsed(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        assert!(
            t0.elapsed() < limit,
            "no write through port {port} within {limit:?}; last error: {last}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn get_on(spec: &NodeSpec, key: &str) -> Option<String> {
    let mut con = user_conn(spec.port, PASSWORD).await.expect("direct");
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut con)
        .await
        .expect("GET")
}

/// One raw client connection through the proxy, logged in as the default user: the same
/// connection throughout, so the test sees whether the proxy closed it.
struct Client(TcpStream);

impl Client {
    async fn open(port: u16) -> io::Result<Client> {
        let s = tokio::time::timeout(REPLY_TIMEOUT, TcpStream::connect(("127.0.0.1", port)))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect"))??;
        let mut c = Client(s);
        let reply = c.call(&format!("AUTH {PASSWORD}\r\n")).await?;
        if reply != "+OK" {
            return Err(io::Error::other(format!("AUTH answered {reply}")));
        }
        Ok(c)
    }

    /// Sends one command and reads its one-line reply.
    async fn call(&mut self, command: &str) -> io::Result<String> {
        self.0.write_all(command.as_bytes()).await?;
        let mut reply = Vec::new();
        let read = async {
            let mut buf = [0u8; 512];
            loop {
                let n = self.0.read(&mut buf).await?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
                }
                reply.extend_from_slice(&buf[..n]);
                if reply.ends_with(b"\r\n") {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, read)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no reply"))??;
        Ok(String::from_utf8_lossy(&reply).trim_end().to_string())
    }

    async fn ping(&mut self) -> bool {
        matches!(self.call("PING\r\n").await.as_deref(), Ok("+PONG"))
    }

    /// PINGs until the connection is closed by the other side; how long that took, or None
    /// if it was still open after `limit`.
    async fn closed_within(&mut self, limit: Duration) -> Option<Duration> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            match self.call("PING\r\n").await {
                Err(e) if e.kind() != io::ErrorKind::TimedOut => return Some(t0.elapsed()),
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        None
    }
}

/// Opens connections to `port` (login + PING each) until told to stop; counts the good ones
/// and keeps what went wrong with the others.
struct Hammer {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Hammer {
    fn start(port: u16) -> Hammer {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            async move {
                while !stop.load(Ordering::SeqCst) {
                    let failure = match Client::open(port).await {
                        Ok(mut c) => {
                            if c.ping().await {
                                ok.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            "no PONG".to_string()
                        }
                        Err(e) => e.to_string(),
                    };
                    failures.lock().unwrap().push(failure);
                    // Refused connections come back at once: don't spin on them.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
        Hammer {
            stop,
            ok,
            failures,
            task,
        }
    }

    /// Stops; the good connections, and the failed ones with up to 5 different reasons.
    async fn finish(self) -> (u64, usize, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.expect("hammer task");
        let failures = self.failures.lock().unwrap();
        let mut reasons: Vec<String> = failures.clone();
        reasons.sort();
        reasons.dedup();
        reasons.truncate(5);
        (self.ok.load(Ordering::SeqCst), failures.len(), reasons)
    }
}

async fn refuses(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_follows_the_master_reloads_without_dropping_and_comes_back_after_kill() {
    let p = Pair::new();
    start_pair(&p).await;
    let proxy = proxy_for(&p);
    let (port_a, port_b) = (free_port(), free_port());
    let a = frontend(&p, "crs-proxy-a", port_a, &[&p.master, &p.replica]);

    // 1. Start: the frontend serves, writes land on the master.
    assert_eq!(proxy.running(), None);
    let t0 = Instant::now();
    assert!(proxy.apply(slice::from_ref(&a)).await.expect("apply start"));
    let apply_start = t0.elapsed();
    let pid = proxy.running().expect("haproxy runs");
    let t0 = Instant::now();
    assert!(!proxy.apply(slice::from_ref(&a)).await.expect("apply same"));
    let apply_same = t0.elapsed();
    assert_eq!(proxy.running(), Some(pid), "same config: no reload");
    let mut con = user_conn(port_a, PASSWORD)
        .await
        .expect("through the proxy");
    redis::cmd("SET")
        .arg("k1")
        .arg("v1")
        .query_async::<()>(&mut con)
        .await
        .expect("SET through the proxy");
    assert_eq!(get_on(&p.master, "k1").await.as_deref(), Some("v1"));
    // The check user's ACL (`-@all +ping +info|replication`) lets the check tell the roles.
    wait_until("only the master UP", Duration::from_secs(5), || async {
        proxy.servers_up(&a.name).await.expect("servers_up") == vec![p.master.name.clone()]
    })
    .await;

    let root = p.tmp.path().join("haproxy");
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path).expect("stat").permissions().mode() & 0o777
    };
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("haproxy.cfg")), 0o600);

    // 2. Swap the roles by hand: writes follow the new master; the connection open to the
    // old one is shut when the check marks it down.
    let mut to_old_master = Client::open(port_a).await.expect("client");
    assert!(to_old_master.ping().await);
    let t0 = Instant::now();
    swap_roles(&p, &p.replica, &p.master).await;
    let swap_to_write = first_write(port_a, "k2", "v2", Duration::from_secs(10)).await;
    assert_eq!(get_on(&p.replica, "k2").await.as_deref(), Some("v2"));
    assert!(
        to_old_master
            .closed_within(Duration::from_secs(5))
            .await
            .is_some(),
        "the connection to the demoted master is still open"
    );
    let shut_after = t0.elapsed();
    wait_until("only the new master UP", Duration::from_secs(5), || async {
        proxy.servers_up(&a.name).await.expect("servers_up") == vec![p.replica.name.clone()]
    })
    .await;

    // 3. A reload that adds B: the connection on A stays, no connection attempt is refused.
    let mut kept = Client::open(port_a).await.expect("client");
    assert!(kept.ping().await);
    let hammer = Hammer::start(port_a);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let b = frontend(&p, "crs-proxy-b", port_b, &[&p.replica, &p.master]);
    let t0 = Instant::now();
    assert!(proxy
        .apply(&[a.clone(), b.clone()])
        .await
        .expect("apply reload"));
    let apply_reload = t0.elapsed();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ok, failed, reasons) = hammer.finish().await;
    assert_eq!(
        failed,
        0,
        "{failed} of {} connections failed around the reload: {reasons:?}",
        ok + failed as u64
    );
    assert!(ok > 0);
    assert!(
        kept.ping().await,
        "the reload dropped an established connection"
    );
    // A's servers start from the states of the worker before: the old master, listed first,
    // is DOWN from the first moment.
    assert_eq!(
        proxy.servers_up(&a.name).await.expect("servers_up"),
        vec![p.replica.name.clone()]
    );
    first_write(port_b, "k3", "v3", Duration::from_secs(5)).await;
    assert_eq!(get_on(&p.replica, "k3").await.as_deref(), Some("v3"));

    // `kept` is now served by the old worker, which runs no checks: after a swap back, only
    // the sweep moves it off the demoted master.
    let t0 = Instant::now();
    swap_roles(&p, &p.master, &p.replica).await;
    let swap_back_to_write = first_write(port_a, "k4", "v4", Duration::from_secs(10)).await;
    wait_until(
        "only the master UP again",
        Duration::from_secs(5),
        || async {
            proxy.servers_up(&a.name).await.expect("servers_up") == vec![p.master.name.clone()]
        },
    )
    .await;
    let old_worker_kept_it = kept.ping().await;
    let swept = proxy.sweep_old_workers().await.expect("sweep");
    assert!(swept >= 1, "nothing swept");
    assert!(
        kept.closed_within(Duration::from_secs(2)).await.is_some(),
        "the sweep left the connection to the demoted master open"
    );
    let swap_back_total = t0.elapsed();

    // Removing B frees its port; shutdown_sessions reaches a connection an old worker holds.
    let mut held = Client::open(port_a).await.expect("client");
    assert!(held.ping().await);
    let t0 = Instant::now();
    assert!(proxy
        .apply(slice::from_ref(&a))
        .await
        .expect("apply remove B"));
    let apply_remove = t0.elapsed();
    wait_until("B's port freed", Duration::from_secs(3), || refuses(port_b)).await;
    assert!(held.ping().await, "removing B dropped a connection on A");
    proxy
        .shutdown_sessions(&a.name, &p.master.name)
        .await
        .expect("shutdown sessions");
    assert!(
        held.closed_within(Duration::from_secs(2)).await.is_some(),
        "shutdown_sessions left the old worker's connection open"
    );
    first_write(port_a, "k5", "v5", Duration::from_secs(5)).await;

    // Maintenance survives a reload (here one that puts the replica first).
    proxy
        .set_maint(&a.name, &p.master.name, true)
        .await
        .expect("maint");
    assert!(proxy.servers_up(&a.name).await.expect("up").is_empty());
    let a_reordered = frontend(&p, "crs-proxy-a", port_a, &[&p.replica, &p.master]);
    assert!(proxy
        .apply(slice::from_ref(&a_reordered))
        .await
        .expect("apply reorder"));
    assert!(
        proxy.servers_up(&a.name).await.expect("up").is_empty(),
        "maintenance or the replica's DOWN state was lost in the reload"
    );
    proxy
        .set_maint(&a.name, &p.master.name, false)
        .await
        .expect("ready");
    assert_eq!(
        proxy.servers_up(&a.name).await.expect("up"),
        vec![p.master.name.clone()]
    );
    proxy
        .set_health(&a.name, &p.replica.name, true)
        .await
        .expect("health up");
    assert_eq!(
        proxy.servers_up(&a.name).await.expect("up"),
        vec![p.replica.name.clone(), p.master.name.clone()]
    );
    proxy
        .set_health(&a.name, &p.replica.name, false)
        .await
        .expect("health down");
    assert_eq!(
        proxy.servers_up(&a.name).await.expect("up"),
        vec![p.master.name.clone()]
    );
    match proxy.set_health(&a.name, "crs-no-such-node", true).await {
        Err(EngineError::ProxyCommand { reply, .. }) => assert!(reply.contains("No such server")),
        other => panic!("unknown server: {other:?}"),
    }

    // 4. kill -9 of the master process: ensure_running brings it back.
    kill9_proxy(&proxy).await;
    let t0 = Instant::now();
    assert!(proxy.ensure_running().await.expect("ensure_running"));
    let restart = t0.elapsed();
    assert_ne!(proxy.running(), Some(pid));
    assert!(proxy.running().is_some());
    let restart_to_write = first_write(port_a, "k6", "v6", Duration::from_secs(5)).await;
    assert_eq!(get_on(&p.master, "k6").await.as_deref(), Some("v6"));
    assert!(!proxy.ensure_running().await.expect("ensure_running again"));

    // Nothing secret in haproxy's log.
    let log = std::fs::read_to_string(root.join("haproxy.log")).expect("log");
    assert!(!log.contains(&a.check_secret));
    assert!(!log.contains(PASSWORD));

    proxy.stop().await.expect("stop");
    assert_eq!(proxy.running(), None);
    assert!(refuses(port_a).await);
    assert!(
        support::processes_mentioning(&root).is_empty(),
        "haproxy processes left after stop"
    );
    match proxy.servers_up(&a.name).await {
        Err(EngineError::Proxy { what, .. }) => assert!(what.contains("not running"), "{what}"),
        other => panic!("servers_up of a stopped proxy: {other:?}"),
    }

    println!("proxy timings:");
    println!("  apply, start:                     {apply_start:?}");
    println!("  apply, unchanged:                 {apply_same:?}");
    println!("  apply, reload adding B:           {apply_reload:?} ({ok} connections on A meanwhile, none refused)");
    println!("  apply, reload removing B:         {apply_remove:?}");
    println!("  role swap to first write:         {swap_to_write:?}");
    println!("  role swap to old connection shut: {shut_after:?}");
    println!("  swap back to first write:         {swap_back_to_write:?}");
    println!("  swap back, sweep done:            {swap_back_total:?} (old worker still held the connection before the sweep: {old_worker_kept_it})");
    println!("  ensure_running after kill -9:     {restart:?}");
    println!("  restart to first write:           {restart_to_write:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_refused_before_haproxy_sees_it() {
    let p = Pair::new();
    start_pair(&p).await;
    let proxy = proxy_for(&p);
    assert!(matches!(
        proxy.ensure_running().await,
        Err(EngineError::Config(_))
    ));
    let port_a = free_port();
    let a = frontend(&p, "crs-proxy-a", port_a, &[&p.master, &p.replica]);
    assert!(proxy.apply(slice::from_ref(&a)).await.expect("apply"));
    let pid = proxy.running().expect("running");
    let conf = p.tmp.path().join("haproxy").join("haproxy.cfg");
    let before = std::fs::read_to_string(&conf).expect("conf");
    let mut kept = Client::open(port_a).await.expect("client");
    let hammer = Hammer::start(port_a);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // B on a port someone else listens on (the replica's). Handed to haproxy, the reload
    // would fail after pausing A's listener for about 2 s; it must not get that far.
    let b = frontend(&p, "crs-proxy-b", p.replica.port, &[&p.replica]);
    match proxy.apply(&[a.clone(), b]).await {
        Err(EngineError::Io(e)) => assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}"),
        other => panic!("a port in use must fail the apply: {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (ok, failed, reasons) = hammer.finish().await;
    assert_eq!(failed, 0, "{failed} connections on A failed: {reasons:?}");
    assert!(ok > 0);
    assert_eq!(std::fs::read_to_string(&conf).expect("conf"), before);
    assert_eq!(proxy.running(), Some(pid));
    assert!(kept.ping().await);
    first_write(port_a, "k", "v", Duration::from_secs(5)).await;
    // The config on disk is the one that serves: applying it again changes nothing.
    assert!(!proxy.apply(&[a]).await.expect("apply again"));
    proxy.stop().await.expect("stop");
}

/// One SET through `port` on a fresh connection, no retry: the address must lead to the
/// master now.
async fn write_once(port: u16, key: &str) -> Result<(), String> {
    let attempt = async {
        let mut con = user_conn(port, PASSWORD).await?;
        redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query_async::<()>(&mut con)
            .await
    };
    match tokio::time::timeout(REPLY_TIMEOUT, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spare_serves_a_new_frontend_without_a_reload() {
    let p = Pair::new();
    start_pair(&p).await;
    let proxy = proxy_for(&p);
    let (port_a, spare_1, spare_2, spare_3) = (free_port(), free_port(), free_port(), free_port());
    let a = frontend(&p, "crs-proxy-a", port_a, &[&p.master, &p.replica]);
    assert!(proxy
        .apply_with_spares(slice::from_ref(&a), &[spare_1, spare_2])
        .await
        .expect("apply"));
    assert_eq!(proxy.free_spares().await, vec![spare_1, spare_2]);
    // A spare serves nobody: its slots are in maintenance.
    let mut probe = TcpStream::connect(("127.0.0.1", spare_1))
        .await
        .expect("a spare's port accepts");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(REPLY_TIMEOUT, async {
        probe.write_all(b"PING\r\n").await?;
        probe.read(&mut buf).await
    })
    .await
    .expect("closed at once")
    .unwrap_or(0);
    assert_eq!(n, 0, "a spare answered: {:?}", &buf[..n]);
    let mut on_a = Client::open(port_a).await.expect("client on A");
    assert!(on_a.ping().await);

    // B takes the spare on its port, its replica listed first: the master only is UP, at
    // once, and no reload happened.
    let reloads = proxy.reloads().await.expect("reloads");
    let b = frontend(&p, "crs-proxy-b", spare_1, &[&p.replica, &p.master]);
    let t0 = Instant::now();
    assert!(proxy.take_spare(&b, &p.master.name).await.expect("take"));
    let take = t0.elapsed();
    assert_eq!(
        proxy.servers_up(&b.name).await.expect("up"),
        vec![p.master.name.clone()]
    );
    write_once(spare_1, "b1")
        .await
        .expect("B's address leads to the master right after the take");
    assert_eq!(get_on(&p.master, "b1").await.as_deref(), Some("v"));
    assert_eq!(
        proxy.reloads().await.expect("reloads"),
        reloads,
        "no reload"
    );
    assert_eq!(proxy.free_spares().await, vec![spare_2]);
    assert_eq!(proxy.taken_spares().await, 1);
    // Taken again as it is: served already. A port with no spare: the caller must apply.
    assert!(proxy.take_spare(&b, &p.master.name).await.expect("again"));
    let c_nowhere = frontend(&p, "crs-proxy-c", free_port(), &[&p.master]);
    assert!(!proxy
        .take_spare(&c_nowhere, &p.master.name)
        .await
        .expect("no spare"));
    // The runtime commands reach B by its names.
    proxy
        .set_health(&b.name, &p.replica.name, false)
        .await
        .expect("health by B's names");
    let conf =
        std::fs::read_to_string(p.tmp.path().join("haproxy").join("haproxy.cfg")).expect("conf");
    assert!(
        conf.contains("listen crs-proxy-b\n"),
        "the config on disk renders B"
    );

    // The reload that gives B its own section and a new spare: connections on A and B stay,
    // none is refused, B's replica stays DOWN from the first moment.
    let mut on_b = Client::open(spare_1).await.expect("client on B");
    assert!(on_b.ping().await);
    let hammer_a = Hammer::start(port_a);
    let hammer_b = Hammer::start(spare_1);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = Instant::now();
    assert!(proxy
        .apply_with_spares(&[a.clone(), b.clone()], &[spare_2, spare_3])
        .await
        .expect("replenishing reload"));
    let replenish = t0.elapsed();
    assert_eq!(
        proxy.servers_up(&b.name).await.expect("up"),
        vec![p.master.name.clone()],
        "B's states were not carried over to its own section"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    for (name, hammer) in [("A", hammer_a), ("B", hammer_b)] {
        let (ok, failed, reasons) = hammer.finish().await;
        assert_eq!(
            failed, 0,
            "{failed} connections on {name} failed: {reasons:?}"
        );
        assert!(ok > 0);
    }
    assert!(on_a.ping().await, "the reload dropped a connection on A");
    assert!(on_b.ping().await, "the reload dropped a connection on B");
    assert_eq!(proxy.taken_spares().await, 0);
    assert_eq!(proxy.free_spares().await, vec![spare_2, spare_3]);
    // The old worker still holds on_b under the spare's names: a sweep keeps it (its
    // server, the master, is UP).
    assert_eq!(proxy.sweep_old_workers().await.expect("sweep"), 0);
    assert!(
        on_b.ping().await,
        "the sweep shut a connection to the master"
    );

    // A spare taken, then a kill -9: the restart from the config on disk serves it.
    let c = frontend(&p, "crs-proxy-c", spare_2, &[&p.master, &p.replica]);
    assert!(proxy.take_spare(&c, &p.master.name).await.expect("take C"));
    kill9_proxy(&proxy).await;
    assert!(proxy.ensure_running().await.expect("ensure_running"));
    first_write(spare_2, "c1", "v", Duration::from_secs(5)).await;
    first_write(spare_1, "b2", "v", Duration::from_secs(5)).await;
    assert_eq!(proxy.free_spares().await, vec![spare_3]);
    proxy.stop().await.expect("stop");
    println!("spare timings: take {take:?}, replenishing reload {replenish:?}");
}

/// kill -9 of the proxy's master process, and its workers gone with it.
async fn kill9_proxy(proxy: &Proxy) {
    let pid = proxy.running().expect("running");
    // SAFETY: plain syscall on a pid just found running with our config in its argv.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGKILL);
    }
    wait_until("haproxy gone", Duration::from_secs(5), || async {
        proxy.running().is_none()
    })
    .await;
}
