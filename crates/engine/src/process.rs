//! redis-server processes: spawn detached, find, recognise, signal, wait for exit.
//!
//! # Recognising our process
//!
//! A pid on its own proves nothing: the pid file survives a `kill -9`, and the kernel hands
//! the number to the next process. A pid is ours only if `/proc/<pid>/cmdline` is exactly
//! `<redis-server> <node dir>/redis.conf` (redis keeps its argv because the rendered config
//! says `set-proc-title no`) and the process is not a zombie. The config path names the node,
//! so it also pins the port. Signals go through a pidfd opened *before* that check, so the
//! process checked is the process signalled, even if the pid is recycled in between.
//!
//! # Detaching
//!
//! redis-server runs in a process group of its own, so signals meant for crsd's group (a
//! terminal's Ctrl-C, a shell's hangup) never reach it; stdin is /dev/null and stdout/stderr
//! are appended to redis.log (config errors are printed there before redis opens its log); the
//! environment is cleared down to an allow-list; and it inherits the umask 077 that
//! [`set_private_umask`] gives the whole process, so everything it creates (AOF, RDB, a
//! rewritten redis.conf) is private. Killing crsd, even with SIGKILL, leaves it running; a
//! later crsd adopts it.
//!
//! # Spawning without copying crsd
//!
//! Every option above is one that `posix_spawn` can carry out, and the program is an
//! absolute path ([`resolve_program`]): under those conditions the standard library spawns
//! with `posix_spawn` (a vfork: the child borrows crsd's memory until it execs). Anything
//! else (a `pre_exec` hook such as `setsid`, a bare program name with a custom `PATH`) makes
//! it fall back to `fork`, which copies the page tables of all of crsd, a large process with
//! many threads, and leaves every page crsd writes next to fault once; measured with
//! `make bench`, that cost a create more than redis-server's own exec.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::time::Instant;

use crate::error::io_err;
use crate::layout::NodePaths;
use crate::poll::Backoff;
use crate::{EngineConfig, EngineError};

/// Environment variables redis-server inherits; everything else is cleared (crsd's own
/// secrets and settings have no business in a customer's database process).
const ENV_ALLOW_LIST: &[&str] = &["PATH", "TZ"];

/// Spawns redis-server for the node, detached. The returned child is this process's child
/// until it is reaped; the caller decides when (see `Engine::start`).
pub(crate) fn spawn(
    config: &EngineConfig,
    paths: &NodePaths,
) -> Result<tokio::process::Child, EngineError> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&paths.log)
        .map_err(io_err(format!("opening {}", paths.log.display())))?;
    let log2 = log
        .try_clone()
        .map_err(io_err(format!("duplicating {}", paths.log.display())))?;

    let mut cmd = redis_command(config);
    cmd.arg(&paths.conf)
        .current_dir(&paths.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .kill_on_drop(false);
    // Only options posix_spawn carries out; a pre_exec hook here would make std fork
    // (see "Spawning without copying crsd" above).
    cmd.process_group(0);
    cmd.spawn().map_err(io_err(format!(
        "spawning {} {}",
        config.redis_server.display(),
        paths.conf.display()
    )))
}

/// The executable to run for `configured`, as an absolute path: a bare name (`redis-server`)
/// is looked up in `PATH`, a relative path is taken from the current folder (redis-server
/// starts in its node folder, where a relative path would name something else). Done once,
/// here, so that spawning can use `posix_spawn` (see the module docs). A name not found is
/// kept as it is; spawning it then fails with the usual "not found".
pub(crate) fn resolve_program(configured: &Path) -> PathBuf {
    if configured.is_absolute() {
        return configured.to_path_buf();
    }
    if configured.components().count() != 1 {
        return std::path::absolute(configured).unwrap_or_else(|_| configured.to_path_buf());
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(configured))
                .find(|candidate| is_executable_file(candidate))
        })
        .unwrap_or_else(|| configured.to_path_buf())
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Makes the umask of this whole process 077. redis-server inherits it (`posix_spawn` cannot
/// set a child's umask on its own), and nothing crsd writes is meant for other users either.
pub(crate) fn set_private_umask() {
    // SAFETY: umask(2) cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
}

/// A command running the configured redis-server executable with the environment cleared
/// down to [`ENV_ALLOW_LIST`].
fn redis_command(config: &EngineConfig) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(&config.redis_server);
    cmd.env_clear();
    for key in ENV_ALLOW_LIST {
        if let Some(value) = std::env::var_os(key) {
            cmd.env(key, value);
        }
    }
    cmd
}

/// `redis-check-rdb <rdb>`, run as the configured redis-server executable itself: redis is
/// one program that picks its mode from the name it is called by (`argv[0]` containing
/// `redis-check-rdb`; Debian's `/usr/bin/redis-check-rdb` is the same binary). So the check
/// needs no second path in the config and always uses the version that will load the file.
/// Killed if the caller drops the future; output is captured.
pub(crate) fn check_rdb_command(config: &EngineConfig, rdb: &Path) -> tokio::process::Command {
    let mut cmd = redis_command(config);
    cmd.arg0("redis-check-rdb")
        .arg(rdb)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The pid of this node's running redis-server: the pid file if it names our process,
/// otherwise a scan of /proc (covers a pid file not written yet or removed by hand).
/// A failure to look (see [`observe`]) counts as "not found" here.
pub(crate) fn find_running(config: &EngineConfig, paths: &NodePaths) -> Option<u32> {
    observe(config, paths).unwrap_or(None)
}

/// Like [`find_running`], but tells "this node's process is not there" (`Ok(None)`) from
/// "could not look" (`Err`): out of file descriptors, /proc or the pid file unreadable for a
/// reason other than the file (or process) not existing. A supervisor must not restart what
/// it could not observe.
pub(crate) fn observe(config: &EngineConfig, paths: &NodePaths) -> io::Result<Option<u32>> {
    if let Some(pid) = read_pid_file_checked(&paths.pid)? {
        if is_our_redis_checked(pid, config, paths)? {
            return Ok(Some(pid));
        }
    }
    let entries = fs::read_dir("/proc")?;
    for entry in entries {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if is_our_redis_checked(pid, config, paths)? {
            return Ok(Some(pid));
        }
    }
    Ok(None)
}

/// Errors that mean "no such file or process", as opposed to "could not look".
fn is_absent(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

fn read_pid_file_checked(path: &Path) -> io::Result<Option<u32>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|pid| *pid > 1 && i32::try_from(*pid).is_ok())),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`is_our_redis`], with a failure to read /proc reported rather than taken for "gone".
fn is_our_redis_checked(pid: u32, config: &EngineConfig, paths: &NodePaths) -> io::Result<bool> {
    if pid <= 1 {
        return Ok(false);
    }
    let stat = match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat,
        Err(e) if is_absent(&e) => return Ok(false),
        Err(e) => return Err(e),
    };
    if stat_is_zombie_or_gone(&stat) {
        return Ok(false);
    }
    match fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => Ok(cmdline_matches(&raw, config, paths)),
        Err(e) if is_absent(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

pub(crate) fn read_pid_file(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    // pid 0 and anything that does not fit a pid_t would make kill(2) hit a process group.
    (pid > 1 && i32::try_from(pid).is_ok()).then_some(pid)
}

/// Removes the pid file if it does not name a live process of this node (after a kill -9 or
/// a failed start), so nobody mistakes it for a running node.
pub(crate) fn remove_stale_pid_file(config: &EngineConfig, paths: &NodePaths) {
    if let Some(pid) = read_pid_file(&paths.pid) {
        if is_our_redis(pid, config, paths) {
            return;
        }
    }
    match fs::remove_file(&paths.pid) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %paths.pid.display(), error = %e, "cannot remove stale pid file")
        }
    }
}

/// Whether `pid` is a live (not zombie) redis-server started for this node.
pub(crate) fn is_our_redis(pid: u32, config: &EngineConfig, paths: &NodePaths) -> bool {
    if pid <= 1 || is_zombie_or_gone(pid) {
        return false;
    }
    let Ok(raw) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline_matches(&raw, config, paths)
}

fn cmdline_matches(raw: &[u8], config: &EngineConfig, paths: &NodePaths) -> bool {
    let mut args = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(OsStr::from_bytes);
    let (Some(exe), Some(conf), None) = (args.next(), args.next(), args.next()) else {
        return false;
    };
    let exe = Path::new(exe);
    let exe_ok = exe == config.redis_server
        || exe.file_name() == config.redis_server.file_name()
        || exe
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(b"redis-server"));
    exe_ok && paths.names_conf(Path::new(conf))
}

/// True when /proc has no such process or it is a zombie/dead (exited, not yet reaped).
fn is_zombie_or_gone(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    stat_is_zombie_or_gone(&stat)
}

/// Reads the state of a `/proc/<pid>/stat` line: zombie or dead (or unreadable) is true.
pub(crate) fn stat_is_zombie_or_gone(stat: &str) -> bool {
    // "pid (comm) S ...": comm may contain spaces and parentheses, the state follows the last ')'.
    match stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
    {
        Some(state) => matches!(state, "Z" | "X" | "x"),
        None => true,
    }
}

/// A pidfd: a handle on one process that never refers to another, even after pid reuse.
pub(crate) struct PidFd(OwnedFd);

impl PidFd {
    pub(crate) fn open(pid: u32) -> io::Result<PidFd> {
        // SAFETY: plain syscall; on success it returns a new fd we own.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = i32::try_from(fd).map_err(|_| io::Error::other("pidfd out of range"))?;
        // SAFETY: fd is a freshly opened descriptor nobody else owns.
        Ok(PidFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(crate) fn signal(&self, sig: libc::c_int) -> io::Result<()> {
        // SAFETY: plain syscall on a valid pidfd.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Sends `sig` to `pid` only if it is this node's redis-server. Returns false (and sends
/// nothing) if it is not, or no longer, ours.
pub(crate) fn signal_ours(
    pid: u32,
    sig: libc::c_int,
    config: &EngineConfig,
    paths: &NodePaths,
) -> Result<bool, EngineError> {
    match PidFd::open(pid) {
        Ok(fd) => {
            // Checked after the pidfd is open: if the check passes, fd is that process.
            if !is_our_redis(pid, config, paths) {
                return Ok(false);
            }
            match fd.signal(sig) {
                Ok(()) => Ok(true),
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
                Err(e) => Err(io_err(format!("signalling pid {pid}"))(e)),
            }
        }
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            // Kernels before 5.3: check-then-kill, the best available.
            if !is_our_redis(pid, config, paths) {
                return Ok(false);
            }
            // SAFETY: plain syscall; pid > 1 was checked by is_our_redis.
            if unsafe { libc::kill(pid as libc::pid_t, sig) } == 0 {
                Ok(true)
            } else {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::ESRCH) {
                    Ok(false)
                } else {
                    Err(io_err(format!("signalling pid {pid}"))(e))
                }
            }
        }
        Err(e) => Err(io_err(format!("pidfd_open({pid})"))(e)),
    }
}

/// Waits until `pid` is no longer this node's live redis-server, or the deadline passes.
pub(crate) async fn wait_gone(
    pid: u32,
    config: &EngineConfig,
    paths: &NodePaths,
    deadline: Instant,
) -> bool {
    let mut backoff = Backoff::process();
    loop {
        if !is_our_redis(pid, config, paths) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        backoff.wait().await;
    }
}

/// The last lines of redis.log (at most ~4 KiB), for error messages.
pub(crate) fn log_tail(paths: &NodePaths) -> String {
    file_tail(&paths.log)
}

/// The last lines (at most ~4 KiB) of a log file, for error messages.
pub(crate) fn file_tail(log: &Path) -> String {
    const MAX_BYTES: u64 = 4096;
    const MAX_LINES: usize = 20;
    let read = || -> io::Result<String> {
        let mut f = fs::File::open(log)?;
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(MAX_LINES);
            lines[start..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", log.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn an_engine_runs_redis_server_by_absolute_path_with_a_private_umask() {
        let engine = crate::Engine::new(EngineConfig::default());
        assert!(engine.config().redis_server.is_absolute());
        // SAFETY: umask(2) cannot fail; the value read is written straight back.
        let mask = unsafe {
            let m = libc::umask(0o077);
            libc::umask(m);
            m
        };
        assert_eq!(mask, 0o077);
    }

    #[test]
    fn a_bare_program_name_is_resolved_through_path_and_paths_are_kept() {
        // redis-server is installed wherever these tests run (they start it).
        let found = resolve_program(Path::new("redis-server"));
        assert!(found.is_absolute(), "{found:?}");
        assert_eq!(found.file_name(), Some(OsStr::new("redis-server")));
        assert!(is_executable_file(&found));
        for kept in ["/opt/redis/bin/redis-server", "crsd-no-such-program"] {
            assert_eq!(resolve_program(Path::new(kept)), Path::new(kept));
        }
        let relative = resolve_program(Path::new("bin/redis-server"));
        assert_eq!(
            relative,
            std::env::current_dir().unwrap().join("bin/redis-server")
        );
    }

    fn cfg() -> EngineConfig {
        EngineConfig {
            redis_server: "redis-server".into(),
            bind: "127.0.0.1".into(),
            start_timeout: Duration::from_secs(1),
            ceiling: None,
            root: PathBuf::from("/srv"),
        }
    }

    #[test]
    fn cmdline_must_name_this_nodes_config() {
        let paths = NodePaths::new(Path::new("/srv/n1")).expect("paths");
        let c = cfg();
        assert!(cmdline_matches(
            b"redis-server\0/srv/n1/redis.conf\0",
            &c,
            &paths
        ));
        assert!(cmdline_matches(
            b"/usr/bin/redis-server\0/srv/n1/redis.conf\0",
            &c,
            &paths
        ));
        assert!(!cmdline_matches(
            b"redis-server\0/srv/n2/redis.conf\0",
            &c,
            &paths
        ));
        assert!(!cmdline_matches(b"bash\0/srv/n1/redis.conf\0", &c, &paths));
        assert!(!cmdline_matches(
            b"redis-server\0/srv/n1/redis.conf\0--port\0x\0",
            &c,
            &paths
        ));
        assert!(!cmdline_matches(b"", &c, &paths));
    }

    #[test]
    fn own_process_is_not_a_redis_and_is_alive() {
        let paths = NodePaths::new(Path::new("/srv/n1")).expect("paths");
        let me = std::process::id();
        assert!(!is_zombie_or_gone(me));
        assert!(!is_our_redis(me, &cfg(), &paths));
        assert!(!signal_ours(me, libc::SIGTERM, &cfg(), &paths).expect("signal"));
    }
}
