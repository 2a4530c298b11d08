//! Per-node Redis metrics the way the ecosystem collects them: Debian's
//! `prometheus-redis-exporter` (oliver006/redis_exporter) in multi-target mode, one process
//! for the host, run detached like Sentinel and HAProxy (see `daemon.rs`).
//!
//! Prometheus asks it `/scrape?target=redis://<node>`; it connects to that node, runs `INFO
//! ALL` and a few read-only commands, and answers in Prometheus text format. It logs in as the
//! internal ACL user [`crate::EXPORTER_USER`] (rules: `config::EXPORTER_USER_RULES`), never
//! as the customer. Each instance has its own secret for that user (derived from the
//! instance's admin secret like Sentinel's), so the exporter reads them from a password file
//! (`-redis.password-file`, a JSON map from target URI to password, 0600), which it loads
//! only when it starts: a changed set of nodes restarts it (a Go program up in milliseconds;
//! a scrape that meets the restart fails and the next one succeeds).
//!
//! `-redis.addr=` (empty) leaves its own `/metrics` without a default Redis: only the
//! targets crsd lists are scraped. The running exporter is recognised by its command line,
//! which names the password file; crsd writes its pid file (the exporter writes none) and,
//! beside it, the digest of the password file it started with, so a new crsd adopts an
//! exporter serving the current nodes instead of restarting it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::daemon::{private_dir, write_private, Daemon};
use crate::error::io_err;
use crate::poll::Backoff;
use crate::EngineError;

/// How long a start may take before it is reported failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM, then SIGKILL after this.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Where and how the exporter runs.
#[derive(Clone, Debug)]
pub struct ExporterConfig {
    /// Debian's `prometheus-redis-exporter` (a bare name is looked up in `PATH`).
    pub program: PathBuf,
    /// `host:port` it serves `/scrape` and its own `/metrics` on: the operator's, like
    /// crsd's metrics listener (no authentication).
    pub listen: String,
    /// Its folder: password file, pid file, log.
    pub root: PathBuf,
}

/// One node to scrape: its URI as Prometheus passes it (`redis://host:port`) and the
/// exporter user's secret on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExporterTarget {
    pub uri: String,
    pub secret: String,
}

impl ExporterTarget {
    /// The target for a node at `host:port`, in the form the exporter looks its password up
    /// by (Go's `url.URL.String()` of what Prometheus sends; an IPv6 host in brackets).
    pub fn new(host: &str, port: u16, secret: String) -> ExporterTarget {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        ExporterTarget {
            uri: format!("redis://{host}:{port}"),
            secret,
        }
    }
}

/// The host's exporter.
#[derive(Debug)]
pub struct Exporter {
    cfg: ExporterConfig,
    root: PathBuf,
    passwords: PathBuf,
    served: PathBuf,
    daemon: Daemon,
    /// One apply at a time.
    lock: tokio::sync::Mutex<()>,
}

impl Exporter {
    pub fn new(cfg: ExporterConfig) -> Exporter {
        let root = std::path::absolute(&cfg.root).unwrap_or_else(|_| cfg.root.clone());
        let passwords = root.join("passwords.json");
        let args: Vec<OsString> = vec![
            "-web.listen-address".into(),
            cfg.listen.clone().into(),
            // No default Redis behind its own /metrics: only the targets crsd lists.
            "-redis.addr=".into(),
            "-redis.user".into(),
            crate::EXPORTER_USER.into(),
            "-redis.password-file".into(),
            passwords.clone().into_os_string(),
        ];
        let daemon = Daemon::new(
            &cfg.program,
            args,
            &root,
            &passwords,
            &root.join("exporter.pid"),
            &root.join("exporter.log"),
        );
        Exporter {
            served: root.join("passwords.served"),
            cfg,
            root,
            passwords,
            daemon,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The address it serves on (`host:port`), as configured.
    pub fn listen(&self) -> &str {
        &self.cfg.listen
    }

    /// The running exporter's pid.
    pub fn running(&self) -> Option<u32> {
        self.daemon.find()
    }

    /// Makes the exporter serve exactly `targets`: writes the password file and starts the
    /// exporter if it does not run, restarts it if it runs with other targets (it reads the
    /// file only at start). Returns once it accepts connections; true if it started.
    pub async fn apply(&self, targets: &[ExporterTarget]) -> Result<bool, EngineError> {
        let _one = self.lock.lock().await;
        let map: BTreeMap<&str, &str> = targets
            .iter()
            .map(|t| (t.uri.as_str(), t.secret.as_str()))
            .collect();
        let text = serde_json::to_string(&map)
            .map_err(|e| EngineError::Config(format!("exporter passwords: {e}")))?;
        let digest = hex::encode(Sha256::digest(text.as_bytes()));
        let running = self.daemon.find();
        let served = fs::read_to_string(&self.served).ok();
        if running.is_some() && served.as_deref() == Some(digest.as_str()) {
            return Ok(false);
        }
        private_dir(&self.root).map_err(io_err(format!("creating {}", self.root.display())))?;
        write_private(&self.passwords, text.as_bytes())
            .map_err(io_err(format!("writing {}", self.passwords.display())))?;
        if running.is_some() {
            self.daemon.stop(STOP_GRACE).await?;
        }
        self.start().await?;
        write_private(&self.served, digest.as_bytes())
            .map_err(io_err(format!("writing {}", self.served.display())))?;
        Ok(true)
    }

    /// Starts it again from the password file on disk if it does not run (after a `kill
    /// -9`); true if it started it. Nothing to do before the first [`Exporter::apply`].
    pub async fn ensure_running(&self) -> Result<bool, EngineError> {
        let _one = self.lock.lock().await;
        if self.daemon.find().is_some() || !self.passwords.exists() {
            return Ok(false);
        }
        let text = fs::read(&self.passwords)
            .map_err(io_err(format!("reading {}", self.passwords.display())))?;
        self.start().await?;
        write_private(&self.served, hex::encode(Sha256::digest(&text)).as_bytes())
            .map_err(io_err(format!("writing {}", self.served.display())))?;
        Ok(true)
    }

    /// Stops it (crsd leaves it running when it stops; this is for removal and tests).
    pub async fn stop(&self) -> Result<bool, EngineError> {
        let _one = self.lock.lock().await;
        self.daemon.stop(STOP_GRACE).await
    }

    async fn start(&self) -> Result<(), EngineError> {
        let pid = self.daemon.spawn()?;
        write_private(&self.daemon.pid_file, format!("{pid}\n").as_bytes()).map_err(io_err(
            format!("writing {}", self.daemon.pid_file.display()),
        ))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut backoff = Backoff::process();
        loop {
            if tokio::net::TcpStream::connect(&self.cfg.listen)
                .await
                .is_ok()
            {
                tracing::info!(pid, listen = %self.cfg.listen, "redis exporter serving");
                return Ok(());
            }
            let gone = fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| crate::process::stat_is_zombie_or_gone(&s))
                .unwrap_or(true);
            if gone || Instant::now() >= deadline {
                let _ = self.daemon.signal(pid, libc::SIGKILL);
                return Err(EngineError::ExporterNotStarted {
                    reason: format!(
                        "{} on {}",
                        if gone {
                            "it exited"
                        } else {
                            "it did not accept connections in time"
                        },
                        self.cfg.listen
                    ),
                    log_tail: log_tail(&self.daemon.log),
                });
            }
            backoff.wait().await;
        }
    }
}

/// The last lines of the exporter's log, for an error.
fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_as_the_exporter_looks_them_up() {
        assert_eq!(
            ExporterTarget::new("127.0.1.5", 6379, "s".into()).uri,
            "redis://127.0.1.5:6379"
        );
        assert_eq!(
            ExporterTarget::new("::1", 7000, "s".into()).uri,
            "redis://[::1]:7000"
        );
    }
}
