//! Host daemons crsd runs beside the nodes (Redis Sentinel, HAProxy): spawned detached like a
//! redis-server, recognised by their command line, signalled through a pidfd.
//!
//! The same rules as `process.rs` hold (see its module docs): a daemon runs in its own
//! process group with stdin on /dev/null, stdout and stderr appended to its log, the
//! environment cleared to `PATH` and `TZ`, the program an absolute path so that the standard
//! library spawns with `posix_spawn`. It outlives crsd; the next crsd finds it by its pid file
//! and, failing that, by a scan of /proc for its command line. A pid counts as the daemon's
//! only when `/proc/<pid>/cmdline` starts with the program and names the daemon's config file
//! as one of its arguments (HAProxy's master adds `-sf <pids>` when it reloads itself).

use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::time::Instant;

use crate::error::io_err;
use crate::poll::Backoff;
use crate::process::{resolve_program, PidFd};
use crate::EngineError;

/// Environment variables a daemon inherits.
const ENV_ALLOW_LIST: &[&str] = &["PATH", "TZ"];

/// One daemon: its program, arguments, folder, config file, pid file and log.
#[derive(Clone, Debug)]
pub(crate) struct Daemon {
    /// Absolute (see [`resolve_program`]).
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Its working folder.
    pub dir: PathBuf,
    /// The file that identifies it: its command line must name it.
    pub conf: PathBuf,
    /// Where the daemon writes its pid (it writes it itself).
    pub pid_file: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub(crate) fn new(
        program: &Path,
        args: Vec<OsString>,
        dir: &Path,
        conf: &Path,
        pid_file: &Path,
        log: &Path,
    ) -> Daemon {
        Daemon {
            program: resolve_program(program),
            args,
            dir: dir.to_path_buf(),
            conf: conf.to_path_buf(),
            pid_file: pid_file.to_path_buf(),
            log: log.to_path_buf(),
        }
    }

    /// Spawns the daemon detached and reaps it in the background if it exits while this
    /// process lives (a zombie would look alive to nobody, but holds a pid).
    ///
    /// For a moment after this returns, [`Daemon::is_ours`] can say no: the kernel lets the
    /// spawner go on once the new program's memory is in place, but fills in the command
    /// line `/proc/<pid>/cmdline` reads only after that (measured: it read empty straight
    /// after one spawn in twelve, sometimes one in four). Tell an early exit by the process
    /// state instead.
    pub(crate) fn spawn(&self) -> Result<u32, EngineError> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.log)
            .map_err(io_err(format!("opening {}", self.log.display())))?;
        let log2 = log
            .try_clone()
            .map_err(io_err(format!("duplicating {}", self.log.display())))?;
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.env_clear();
        for key in ENV_ALLOW_LIST {
            if let Some(value) = std::env::var_os(key) {
                cmd.env(key, value);
            }
        }
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log2))
            .kill_on_drop(false)
            .process_group(0);
        let mut child = cmd.spawn().map_err(io_err(format!(
            "spawning {} for {}",
            self.program.display(),
            self.conf.display()
        )))?;
        let pid = child.id().unwrap_or(0);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = child.wait().await;
            });
        }
        Ok(pid)
    }

    /// The running daemon's pid: the pid file if it names it, else a scan of /proc.
    pub(crate) fn find(&self) -> Option<u32> {
        if let Some(pid) = crate::process::read_pid_file(&self.pid_file) {
            if self.is_ours(pid) {
                return Some(pid);
            }
        }
        let entries = fs::read_dir("/proc").ok()?;
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if self.is_ours(pid) {
                return Some(pid);
            }
        }
        None
    }

    /// Whether `pid` is this daemon, alive (a zombie is not).
    pub(crate) fn is_ours(&self, pid: u32) -> bool {
        if pid <= 1 {
            return false;
        }
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        if crate::process::stat_is_zombie_or_gone(&stat) {
            return false;
        }
        let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
            return false;
        };
        self.cmdline_matches(&raw)
    }

    fn cmdline_matches(&self, raw: &[u8]) -> bool {
        let mut args = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(OsStr::from_bytes);
        let Some(exe) = args.next() else {
            return false;
        };
        let exe = Path::new(exe);
        let exe_ok = exe == self.program || exe.file_name() == self.program.file_name();
        exe_ok && args.any(|a| Path::new(a) == self.conf)
    }

    /// Sends `sig` to `pid` only if it is this daemon (checked after a pidfd is open on it).
    pub(crate) fn signal(&self, pid: u32, sig: libc::c_int) -> Result<bool, EngineError> {
        let fd = match PidFd::open(pid) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
            Err(e) => return Err(io_err(format!("pidfd_open({pid})"))(e)),
        };
        if !self.is_ours(pid) {
            return Ok(false);
        }
        match fd.signal(sig) {
            Ok(()) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
            Err(e) => Err(io_err(format!("signalling pid {pid}"))(e)),
        }
    }

    /// Stops the daemon: SIGTERM, then SIGKILL after `grace`. True when it is gone.
    pub(crate) async fn stop(&self, grace: std::time::Duration) -> Result<bool, EngineError> {
        let Some(pid) = self.find() else {
            return Ok(true);
        };
        self.signal(pid, libc::SIGTERM)?;
        if self.wait_gone(pid, Instant::now() + grace).await {
            return Ok(true);
        }
        self.signal(pid, libc::SIGKILL)?;
        Ok(self
            .wait_gone(pid, Instant::now() + std::time::Duration::from_secs(5))
            .await)
    }

    /// Waits until `pid` is no longer this daemon, or the deadline passes.
    pub(crate) async fn wait_gone(&self, pid: u32, deadline: Instant) -> bool {
        let mut backoff = Backoff::process();
        loop {
            if !self.is_ours(pid) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            backoff.wait().await;
        }
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename, 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        use std::io::Write;
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Creates `dir` (and parents) with mode 0700.
pub(crate) fn private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon() -> Daemon {
        Daemon::new(
            Path::new("/usr/sbin/haproxy"),
            vec![],
            Path::new("/d"),
            Path::new("/d/haproxy.cfg"),
            Path::new("/d/haproxy.pid"),
            Path::new("/d/haproxy.log"),
        )
    }

    #[test]
    fn the_command_line_must_name_the_config_file() {
        let d = daemon();
        assert!(d.cmdline_matches(b"/usr/sbin/haproxy\0-W\0-f\0/d/haproxy.cfg\0"));
        assert!(d.cmdline_matches(b"/usr/sbin/haproxy\0-W\0-f\0/d/haproxy.cfg\0-sf\x0012\0"));
        assert!(!d.cmdline_matches(b"/usr/sbin/haproxy\0-W\0-f\0/e/haproxy.cfg\0"));
        assert!(!d.cmdline_matches(b"/usr/bin/redis-server\0/d/haproxy.cfg\0"));
        assert!(!d.cmdline_matches(b""));
    }
}
