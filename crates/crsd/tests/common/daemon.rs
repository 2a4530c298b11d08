//! The real `crsd` binary as a child process, for the fault tests: start it on a data dir,
//! kill -9 it, start it again. Dropping it kills crsd, every redis-server of its data dir and
//! every process naming the test's folder, and prints crsd's log when the test failed.

use super::{free_port, kill_redis_under, V2Client};
use crsd_core::clock::OffsetClock;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Daemon {
    child: Option<Child>,
    secret_id: String,
    secret_key: String,
    /// The test's temporary folder: every process of this test names it in its argv.
    pub root: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    /// The crsd binary to start: this tree's unless a test (the upgrade test) sets another.
    pub binary: PathBuf,
    /// RLIMIT_NOFILE (soft and hard) to start crsd with; the inherited one when None.
    pub nofile: Option<u64>,
}

impl Daemon {
    /// A crsd to run from `dir` whose first account gets these keys.
    pub fn new(dir: &Path, secret_id: &str, secret_key: &str) -> Daemon {
        let (lo, hi) = super::port_range(40);
        let config = dir.join("crsd.toml");
        std::fs::write(
            &config,
            format!(
                "[instances]\nport_min = {lo}\nport_max = {hi}\n\
                 warm_nodes = 0\nwarm_cluster_nodes = 0\n\
                 [loops]\nsupervise_every_ms = 200\nexpiry_every_secs = 3600\n\
                 [metrics]\nlisten = \"127.0.0.1:0\"\nexporter_listen = \"127.0.0.1:{}\"\n\
                 [ha]\nsentinel_ports = [{}, {}, {}]\n\
                 # Tests share two cores: slowness must not look like a failure.\n\
                 down_after_ms = 1500\n",
                free_port(),
                free_port(),
                free_port(),
                free_port()
            ),
        )
        .unwrap();
        Daemon {
            child: None,
            secret_id: secret_id.to_string(),
            secret_key: secret_key.to_string(),
            root: dir.to_path_buf(),
            data: dir.join("data"),
            config,
            port: free_port(),
            binary: PathBuf::from(env!("CARGO_BIN_EXE_crsd")),
            nofile: None,
        }
    }

    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.with_extension("log"))
            .unwrap();
        let mut cmd = Command::new(&self.binary);
        if let Some(n) = self.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe and touches only the struct on the stack.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .args(["serve", "--config"])
            .arg(&self.config)
            .arg("--data-dir")
            .arg(&self.data)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .env("CRSD_BOOTSTRAP_SECRET_ID", &self.secret_id)
            .env("CRSD_BOOTSTRAP_SECRET_KEY", &self.secret_key)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("crsd binary starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/healthz", self.port);
        loop {
            if let Ok(r) = reqwest::get(&url).await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "crsd did not become healthy");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// crsd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What crsd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Stops crsd as an operator does (SIGTERM), waits until it has exited and returns how
    /// it exited.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("crsd runs");
        let pid = libc::pid_t::try_from(c.id()).expect("a pid fits pid_t");
        // SAFETY: kill(2) on our own child, which has not been waited for yet (no reuse).
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGTERM) },
            0,
            "SIGTERM to crsd"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "crsd did not exit on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn client(&self) -> V2Client {
        V2Client {
            url: format!("http://127.0.0.1:{}", self.port),
            host: format!("127.0.0.1:{}", self.port),
            secret_id: self.secret_id.clone(),
            secret_key: self.secret_key.clone(),
            clock: Arc::new(OffsetClock::new()),
            method: "GET",
            sha256: true,
            http: reqwest::Client::new(),
        }
    }

    /// The folder of the node that had `role` when the instance was created: its first
    /// master is node 0, its first replica node 1.
    pub fn node_dir(&self, id: &str, role: &str) -> PathBuf {
        node_dir(&self.data, id, role)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data.join("backups")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            // What crsd said, for the failure report (the folder is removed after this).
            let log = std::fs::read_to_string(self.data.with_extension("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!("---- crsd log (last 60 lines) ----");
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("{l}");
            }
        }
        kill_redis_under(&self.data);
        // Also what has no pid file: a scratch redis-server, a save child whose parent died.
        kill_procs_naming(&self.root);
    }
}

/// kill -9 every process whose command line names `dir` (this test's own temp folder).
pub fn kill_procs_naming(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name == me || !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmd).contains(&needle) {
            let _ = Command::new("kill").args(["-9", &name]).status();
        }
    }
}

/// See [`Daemon::node_dir`].
#[allow(dead_code)]
pub fn node_dir(data: &Path, id: &str, role: &str) -> PathBuf {
    let seq = match role {
        "master" => 0,
        "replica" => 1,
        other => panic!("no node folder for role {other}"),
    };
    data.join("instances").join(id).join(format!("{id}-{seq}"))
}
