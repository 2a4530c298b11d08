//! The host's redis exporter (Debian's prometheus-redis-exporter) in front of a real master +
//! replica: it scrapes a node as the internal exporter user, only the nodes it is given, is
//! restarted when they change and not otherwise, comes back after a `kill -9`; the exporter
//! user reads no key and no config. Real processes only; `support::Pair` kills every process
//! whose command line names the test's tempdir (the exporter's does: its password file).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crsd_engine::{internal_secret, Exporter, ExporterConfig, ExporterTarget, EXPORTER_USER};
use support::{free_port, start_pair, user_conn, Pair, PASSWORD};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn exporter_for(p: &Pair) -> Exporter {
    Exporter::new(ExporterConfig {
        program: "prometheus-redis-exporter".into(),
        listen: format!("127.0.0.1:{}", free_port()),
        root: p.tmp.path().join("exporter"),
    })
}

fn target(p: &Pair, port: u16) -> ExporterTarget {
    ExporterTarget::new(
        "127.0.0.1",
        port,
        internal_secret(&p.master.admin_secret, EXPORTER_USER),
    )
}

/// `GET path` on `addr`, the body (HTTP/1.0: the server closes when done).
async fn http_get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect exporter");
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    out
}

/// The value of an unlabelled metric line `name value`.
fn value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_the_nodes_it_is_given_as_its_own_user() {
    let p = Pair::new();
    start_pair(&p).await;
    let mut user = user_conn(p.master.port, PASSWORD).await.expect("user");
    for i in 0..25 {
        redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg("v")
            .query_async::<()>(&mut user)
            .await
            .expect("SET");
    }
    let ex = exporter_for(&p);
    let both = [target(&p, p.master.port), target(&p, p.replica.port)];
    assert!(ex.apply(&both).await.expect("apply"), "it starts");
    let pid = ex.running().expect("it runs");
    let file = p.tmp.path().join("exporter/passwords.json");
    let mode = std::fs::metadata(&file)
        .expect("password file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the password file is private");

    let master = http_get(
        ex.listen(),
        &format!("/scrape?target=redis://127.0.0.1:{}", p.master.port),
    )
    .await;
    assert_eq!(value(&master, "redis_up"), Some(1.0), "{master}");
    assert!(
        value(&master, "redis_connected_clients").unwrap_or(0.0) >= 1.0,
        "{master}"
    );
    assert_eq!(
        value(&master, "redis_connected_slaves"),
        Some(1.0),
        "{master}"
    );
    assert!(
        master.contains("redis_db_keys{db=\"db0\"} 25"),
        "the master's keys are counted: {master}"
    );
    let replica = http_get(
        ex.listen(),
        &format!("/scrape?target=redis://127.0.0.1:{}", p.replica.port),
    )
    .await;
    assert_eq!(value(&replica, "redis_up"), Some(1.0), "{replica}");
    assert!(replica.contains("role=\"slave\""), "{replica}");

    // The same nodes again: no restart.
    assert!(!ex.apply(&both).await.expect("apply again"));
    assert_eq!(ex.running(), Some(pid));

    // The replica alone: a restart, after which the master is no longer reachable (no
    // password for it: the exporter reports it down instead of logging in as anybody).
    assert!(ex.apply(&both[1..]).await.expect("apply replica only"));
    let restarted = ex.running().expect("it runs again");
    assert_ne!(restarted, pid);
    let master = http_get(
        ex.listen(),
        &format!("/scrape?target=redis://127.0.0.1:{}", p.master.port),
    )
    .await;
    assert_eq!(value(&master, "redis_up"), Some(0.0), "{master}");

    // kill -9: started again from the file on disk, serving the same nodes.
    unsafe { libc::kill(restarted as i32, libc::SIGKILL) };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while ex.running().is_some() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ex.ensure_running().await.expect("ensure_running"));
    let replica = http_get(
        ex.listen(),
        &format!("/scrape?target=redis://127.0.0.1:{}", p.replica.port),
    )
    .await;
    assert_eq!(value(&replica, "redis_up"), Some(1.0), "{replica}");

    // A new engine's exporter for the same folder adopts it (nothing changed).
    let again = Exporter::new(ExporterConfig {
        program: "prometheus-redis-exporter".into(),
        listen: ex.listen().to_string(),
        root: p.tmp.path().join("exporter"),
    });
    let running = again.running();
    assert!(!again.apply(&both[1..]).await.expect("adopt"));
    assert_eq!(again.running(), running);
    again.stop().await.expect("stop");
    assert_eq!(again.running(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exporter_user_reads_no_key_and_no_config() {
    let p = Pair::new();
    start_pair(&p).await;
    let secret = internal_secret(&p.master.admin_secret, EXPORTER_USER);
    let client = redis::Client::open(format!(
        "redis://{EXPORTER_USER}:{secret}@127.0.0.1:{}/",
        p.master.port
    ))
    .expect("client");
    let mut con = client
        .get_multiplexed_async_connection()
        .await
        .expect("the exporter user logs in");
    let info: String = redis::cmd("INFO")
        .arg("ALL")
        .query_async(&mut con)
        .await
        .expect("INFO ALL");
    assert!(info.contains("used_memory:"));
    for denied in [
        redis::cmd("GET").arg("k").clone(),
        redis::cmd("CONFIG").arg("GET").arg("masterauth").clone(),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CLIENT").arg("LIST").clone(),
    ] {
        let e = denied
            .query_async::<redis::Value>(&mut con)
            .await
            .expect_err("refused");
        assert!(e.to_string().contains("NOPERM"), "{e}");
    }
}
