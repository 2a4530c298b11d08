//! What `crsd serve` tells the person who starts it: the first account's keys, labelled, on the
//! start that makes the account, even when the API's address then turns out to be taken; on
//! every start, the API's address, the keys' file and lines for tccli, the SDK and redis-cli;
//! and never the keys again.

mod common;

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const SECRET_ID: &str = "AKIDfirstStart00000000000000000000";
const SECRET_KEY: &str = "first-start-secret-key-0000000000";

/// Starts the binary on `dir`'s config and data, its stdout into `out`.
fn serve(dir: &Path, port: u16, out: &Path) -> Child {
    let config = dir.join("crsd.toml");
    std::fs::write(
        &config,
        format!(
            "[metrics]\nlisten = \"127.0.0.1:0\"\nexporter_listen = \"\"\n\
             [ha]\nsentinel_ports = [{}, {}, {}]\n",
            common::free_port(),
            common::free_port(),
            common::free_port()
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_crsd"))
        .args(["serve", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("CRSD_BOOTSTRAP_SECRET_ID", SECRET_ID)
        .env("CRSD_BOOTSTRAP_SECRET_KEY", SECRET_KEY)
        .stdout(std::fs::File::create(out).unwrap())
        .stderr(std::fs::File::create(out.with_extension("err")).unwrap())
        .spawn()
        .expect("crsd starts")
}

/// Waits until `out` holds `text` (or the process ended).
fn wait_for(child: &mut Child, out: &Path, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = std::fs::read_to_string(out).unwrap_or_default();
        if got.contains(text) || Instant::now() > deadline {
            return got;
        }
        if child.try_wait().unwrap().is_some() {
            return std::fs::read_to_string(out).unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn the_keys_once_then_only_where_they_are() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path().join("data"));

    // The API's address is taken: crsd fails, but only after showing the keys it made.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = dir.path().join("first.out");
    let mut child = serve(dir.path(), port, &out);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the address is taken");
    let first = std::fs::read_to_string(&out).unwrap();
    assert!(
        first.contains(&format!("SecretId:  {SECRET_ID}")),
        "{first}"
    );
    assert!(
        first.contains(&format!("SecretKey: {SECRET_KEY}")),
        "{first}"
    );
    assert!(first.contains("credentials.json"), "{first}");
    drop(taken);

    // The next start: ready, with the address, the file and the lines to paste; no key.
    let port = common::free_port();
    let out = dir.path().join("second.out");
    let mut child = serve(dir.path(), port, &out);
    let second = wait_for(&mut child, &out, "redis-cli");
    stop(child);
    assert!(second.contains("crsd is ready."), "{second}");
    assert!(
        second.contains(&format!("http://127.0.0.1:{port}")),
        "{second}"
    );
    assert!(
        second.contains(&format!(
            "{}",
            dir.path().join("data/credentials.json").display()
        )),
        "{second}"
    );
    assert!(
        second.contains(&format!(
            "tccli redis DescribeInstances --endpoint http://127.0.0.1:{port}"
        )),
        "{second}"
    );
    assert!(
        second.contains("tccli configure set secretId <SecretId>"),
        "{second}"
    );
    assert!(second.contains("redis_client.RedisClient"), "{second}");
    assert!(!second.contains(SECRET_KEY), "the key again: {second}");
    assert!(!second.contains(SECRET_ID), "the key's id again: {second}");
    // The keys are in the file, 0600.
    let file = dir.path().join("data/credentials.json");
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(kept.contains(SECRET_KEY));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

/// Kills what the crsds of the test left running (sentinels, the proxy).
struct Cleanup(std::path::PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        common::daemon::kill_procs_naming(&self.0);
        common::kill_redis_under(&self.0);
    }
}
