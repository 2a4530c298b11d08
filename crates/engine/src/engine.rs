//! [`Engine`]: the operations crsd performs on a node, built from the other modules.
//!
//! The engine keeps no state about nodes between calls: everything is derived from the
//! [`NodeSpec`] and the node folder (pid file, redis.conf) plus `/proc`. That is what lets a
//! restarted crsd (a fresh `Engine`) pick up processes an earlier crsd started.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use crate::acl_sha256_hex;
use crate::admin::{self, Shutdown};
use crate::ceiling::{CeilingStatus, Ceilings};
use crate::config::{self, Boot, Installed};
use crate::durable;
use crate::error::io_err;
use crate::layout::{self, NodePaths};
use crate::poll::Backoff;
use crate::process;
use crate::restore;
use crate::{EngineConfig, EngineError, NodeHandle, NodeSpec, Role};

/// How long `stop` waits after SHUTDOWN (redis waits up to 10 s for lagging replicas, then
/// fsyncs the AOF) before it escalates to SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);
/// How long `stop` waits after SIGTERM before SIGKILL.
const SIGTERM_GRACE: Duration = Duration::from_secs(5);
/// How long a SIGKILLed process may take to disappear.
const SIGKILL_GRACE: Duration = Duration::from_secs(5);
/// Pause between SHUTDOWN attempts that redis refused.
const SHUTDOWN_RETRY: Duration = Duration::from_millis(200);
/// Longest pause between polls of `wait_replicas` (replicas acknowledge their offset once a
/// second; a new replica reports it as soon as its first sync ends).
const REPLICA_POLL_CAP: Duration = Duration::from_millis(100);
/// How long a replica's link may stay down with no sync in progress before
/// `wait_replica_synced` reconnects it (a handshake takes about a millisecond).
const REPLICA_NUDGE_AFTER: Duration = Duration::from_millis(5);

/// What [`Engine::liveness`] found of a node's process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running, with this pid.
    Alive(u32),
    /// Not running (no such process, or a zombie).
    Dead,
    /// Could not tell: why (e.g. "Too many open files").
    Unknown(String),
}

/// The file in a node folder that holds how many kills by the memory ceiling have been
/// reported already (the cgroup's counter only grows; see [`Engine::take_oom_kills`]).
const OOM_SEEN_FILE: &str = "ceiling-oom-kills";
/// How long `destroy` retries removing a node's cgroup (a fork of the stopped redis-server,
/// e.g. a BGSAVE child, may still be ending).
const CGROUP_REMOVE_GRACE: Duration = Duration::from_secs(5);

/// Drives the redis-server processes of nodes. Cheap to clone; holds only the config and
/// the cgroup tree found at creation.
#[derive(Clone, Debug)]
pub struct Engine {
    config: EngineConfig,
    ceilings: Option<Arc<Ceilings>>,
}

impl Engine {
    /// The engine for `config`. A bare `redis_server` name is resolved through `PATH` here,
    /// and the process umask becomes 077 (see `process.rs`: both let redis-server be spawned
    /// with `posix_spawn` and still create only private files).
    ///
    /// With `config.ceiling` set, the cgroup tree is found here (see `ceiling.rs`); where none
    /// can be used, this warns once and the nodes run without a ceiling.
    pub fn new(mut config: EngineConfig) -> Engine {
        config.redis_server = process::resolve_program(&config.redis_server);
        process::set_private_umask();
        let ceilings = config.ceiling.as_ref().and_then(|c| match Ceilings::detect(c) {
            Ok(ceilings) => {
                tracing::info!(
                    cgroup = ceilings.version(),
                    group = %ceilings.memory_dir("").display(),
                    headroom_percent = c.memory_headroom_percent,
                    headroom_min_mb = c.memory_headroom_min_mb,
                    cpu_weight = c.cpu_weight,
                    cpu_quota_percent = c.cpu_quota_percent,
                    "redis-server processes run under a memory and CPU ceiling"
                );
                Some(Arc::new(ceilings))
            }
            Err(reason) => {
                tracing::warn!(%reason, "no usable cgroup: redis-server processes run WITHOUT a \
                    memory ceiling (Lua scripts and client buffers can take the host's memory)");
                None
            }
        });
        Engine { config, ceilings }
    }

    /// Where the node's files live: `<root>/<instance>/<node>`. The instance and node names
    /// must be plain folder names.
    pub(crate) fn node_paths(&self, spec: &NodeSpec) -> Result<NodePaths, EngineError> {
        for (what, name) in [("instance", &spec.instance), ("node", &spec.name)] {
            if !layout::is_plain_name(name) {
                return Err(EngineError::Config(format!(
                    "{what} name {name:?} is not a plain folder name"
                )));
            }
        }
        NodePaths::new(&self.config.root.join(&spec.instance).join(&spec.name))
    }

    /// Moves a node's folder from the previous release's layout
    /// (`<root>/<instance>/{master,replica}`, named by the role the node had) to its own
    /// (`<root>/<instance>/<node>`), while its redis-server keeps running: the old name stays
    /// as a link to the new folder, because that process was started with paths under it
    /// (its config file, pid file and log). The link goes when the node next starts a fresh
    /// process. Call it before anything else touches the node, with the role the node had
    /// under the previous release. Returns whether a folder was moved.
    pub fn migrate_legacy_folder(&self, spec: &NodeSpec) -> Result<bool, EngineError> {
        let paths = self.node_paths(spec)?;
        let legacy_name = match spec.role {
            Role::Master => "master",
            Role::Replica => "replica",
        };
        let instance_dir = self.config.root.join(&spec.instance);
        let legacy = instance_dir.join(legacy_name);
        match fs::symlink_metadata(&legacy) {
            Ok(m) if m.is_dir() => {}
            _ => return Ok(false),
        }
        if paths.dir.exists() {
            return Err(EngineError::Config(format!(
                "both {} and {} exist; not moving either",
                legacy.display(),
                paths.dir.display()
            )));
        }
        fs::rename(&legacy, &paths.dir).map_err(io_err(format!(
            "moving {} to {}",
            legacy.display(),
            paths.dir.display()
        )))?;
        std::os::unix::fs::symlink(&spec.name, &legacy)
            .map_err(io_err(format!("linking {}", legacy.display())))?;
        durable::sync_dir(&instance_dir)?;
        tracing::info!(node = %spec.name, from = %legacy.display(), to = %paths.dir.display(),
            "node folder moved to this release's layout");
        Ok(true)
    }

    /// Removes the links the layout migration left for this node (see
    /// [`Engine::migrate_legacy_folder`]) once no process of the node uses them.
    fn remove_legacy_links(&self, spec: &NodeSpec) {
        let instance_dir = self.config.root.join(&spec.instance);
        for legacy in ["master", "replica"] {
            let link = instance_dir.join(legacy);
            if fs::read_link(&link).is_ok_and(|target| target == std::path::Path::new(&spec.name)) {
                if let Err(e) = fs::remove_file(&link) {
                    tracing::warn!(link = %link.display(), error = %e, "cannot remove a link of the previous layout");
                }
            }
        }
    }

    /// Removes an instance's folder once its nodes are destroyed (only empty folders and
    /// links of the previous layout are removed; a node folder left behind stays).
    pub fn remove_instance_folder(&self, instance: &str) -> Result<(), EngineError> {
        if !layout::is_plain_name(instance) {
            return Err(EngineError::Config(format!(
                "instance name {instance:?} is not a plain folder name"
            )));
        }
        let dir = self.config.root.join(instance);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("listing {}", dir.display()))(e)),
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_symlink()) {
                let _ = fs::remove_file(entry.path());
            }
        }
        fs::remove_dir(&dir).map_err(io_err(format!("removing {}", dir.display())))
    }

    /// The cgroup version the nodes' ceilings use; `None` when they run without one.
    pub fn ceiling_version(&self) -> Option<u8> {
        self.ceilings.as_ref().map(|c| c.version())
    }

    /// Removes the cgroup(s) of the node named `node` (`<instance>-master`, ...): for tools
    /// that killed its process themselves (a benchmark's cleanup); `destroy` does this for an
    /// instance crsd deletes. An error while a process still runs in them.
    pub fn remove_ceiling(&self, node: &str) -> std::io::Result<()> {
        match &self.ceilings {
            Some(c) => c.remove(node),
            None => Ok(()),
        }
    }

    /// What the kernel reports about the node's memory cgroup (limit, peak, kills); `None`
    /// without ceilings or before the node first started.
    pub fn ceiling_status(&self, spec: &NodeSpec) -> Option<CeilingStatus> {
        self.ceilings.as_ref()?.status(&spec.name)
    }

    /// Kills by the node's memory ceiling since the last call (0 without ceilings). The
    /// kernel's counter lives as long as the node's cgroup and only grows; the part already
    /// reported is kept in the node folder, so a crsd restart reports nothing twice. A kill
    /// may hit redis-server itself (the node is down) or one of its forks (a BGSAVE or AOF
    /// rewrite fails; the node runs on).
    pub fn take_oom_kills(&self, spec: &NodeSpec) -> Result<u64, EngineError> {
        let Some(status) = self.ceiling_status(spec) else {
            return Ok(0);
        };
        let paths = self.node_paths(spec)?;
        if !paths.dir.is_dir() {
            return Ok(0);
        }
        let seen_path = paths.dir.join(OOM_SEEN_FILE);
        let seen: u64 = fs::read_to_string(&seen_path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let now = status.oom_kills;
        if now == seen {
            return Ok(0);
        }
        // Fewer than seen: the cgroup was made anew (host reboot); all of its kills are new.
        let new = if now > seen { now - seen } else { now };
        let tmp = paths.dir.join(format!("{OOM_SEEN_FILE}.tmp"));
        let _ = fs::remove_file(&tmp);
        crate::durable::write_new_synced(&tmp, now.to_string().as_bytes())?;
        crate::durable::rename_synced(&paths.dir, &tmp, &seen_path)?;
        Ok(new)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Writes (or keeps, see "redis.conf" in the [crate] docs) redis.conf (0600, folder 0700) and starts
    /// redis-server detached, then polls readiness (PING as the admin user, answered by this
    /// very pid) until `start_timeout`. On failure the new process is killed and a typed error
    /// carries the tail of redis.log.
    ///
    /// If the node's redis-server is already running, no second one is started: its handle is
    /// returned once it answers, or [`EngineError::NotReady`] if it does not in time (it is
    /// then left running). The spec is not re-applied to a running process (use the setters,
    /// or stop + start).
    ///
    /// Calls for one node must not run concurrently (the caller serialises per node). If the
    /// returned future is dropped half-way, the spawned process keeps running and a later
    /// `start`/`adopt` picks it up.
    pub async fn start(&self, spec: &NodeSpec) -> Result<NodeHandle, EngineError> {
        self.start_as(spec, Boot::Aof, self.config.start_timeout)
            .await
    }

    /// [`Engine::start`] for a node whose data a restore has just swapped in
    /// ([`Engine::swap_in_restore`] left the restored RDB as dump.rdb beside the AOF folder
    /// built from it): the process loads that RDB with the AOF off and the customer's user
    /// unable to write (see [`config::Boot::RestoredRdb`]), so that it keeps the replication
    /// id and offset the RDB carries. Master and replicas started this way on the same RDB
    /// need no full sync: the replicas continue from the RDB's offset (`+CONTINUE`). Must be
    /// followed by [`Engine::settle_restored`].
    ///
    /// Without a restore under way (no dump.rdb, or no `appendonlydir.before-restore`: a start
    /// on the AOF since has consumed it) it is a plain [`Engine::start`].
    ///
    /// `load_timeout` replaces `start_timeout` when it is longer: every node of the instance
    /// loads the whole data set at the same time, each sharing the host's cores with the
    /// others.
    pub async fn start_restored(
        &self,
        spec: &NodeSpec,
        load_timeout: Duration,
    ) -> Result<NodeHandle, EngineError> {
        let paths = self.node_paths(spec)?;
        let boot = if durable::exists(&paths.rdb)? && durable::exists(&paths.before_restore_dir)? {
            Boot::RestoredRdb
        } else {
            Boot::Aof
        };
        self.start_as(spec, boot, load_timeout.max(self.config.start_timeout))
            .await
    }

    async fn start_as(
        &self,
        spec: &NodeSpec,
        boot: Boot,
        timeout: Duration,
    ) -> Result<NodeHandle, EngineError> {
        let paths = self.node_paths(spec)?;
        // Validate the whole spec before touching anything.
        let rendered = config::render_for(&self.config, spec, &paths, boot)?;
        prepare_dir(&paths)?;

        // No redis.conf yet means no process can be running for this node (its command line
        // names that file); skipping the /proc scan keeps a first start cheap on a busy host.
        let running = if paths.conf.exists() {
            process::find_running(&self.config, &paths)
        } else {
            None
        };
        if let Some(pid) = running {
            if let Some(handle) = self.await_existing(spec, &paths, pid, timeout).await? {
                tracing::info!(node = %spec.name, pid, "redis-server already running");
                if boot == Boot::Aof {
                    self.conform_running(spec, pid).await;
                } else {
                    // Possibly still without its AOF: its write commands come back with
                    // `settle_restored`, not before.
                    self.conform_ceiling(spec, pid);
                }
                return Ok(handle);
            }
            // It exited while we waited: start a fresh one below.
        }

        let installed = match boot {
            Boot::Aof => config::install(&paths, &rendered)?,
            Boot::RestoredRdb => config::install_fresh(&paths, &rendered)?,
        };
        if boot == Boot::Aof {
            // Never loaded with the AOF on, and a later restored start must not load a
            // dump.rdb older than what this process is about to accept (see start_restored).
            durable::remove_file_synced(&paths.dir, &paths.rdb)?;
        }
        process::remove_stale_pid_file(&self.config, &paths);
        self.remove_legacy_links(spec);
        if let Some(c) = &self.ceilings {
            c.prepare(&spec.name, spec.maxmemory_mb)
                .map_err(io_err(format!("{}: preparing its cgroup", spec.name)))?;
        }
        let mut child = process::spawn(&self.config, &paths)?;
        let Some(pid) = child.id() else {
            return Err(EngineError::Protocol(
                "spawned redis-server has no pid".into(),
            ));
        };
        // Into its cgroup at once. posix_spawn cannot start a child in another cgroup (clone3
        // with CLONE_INTO_CGROUP could, but std spawns through posix_spawn, and a fork-based
        // spawn costs more than the exec itself, see process.rs), so redis-server runs in
        // crsd's cgroup from its exec until this write: microseconds in which it reads its
        // config. On cgroup v1 a migration waits for an RCU grace period (5-15 ms measured
        // here while the host is busy) unless another one just happened: the write runs off
        // the runtime's threads and beside redis-server's own start (the wait for it to be
        // ready below), not before it. Either way the node counts as started only once it is
        // in its cgroup.
        let entering = self.ceilings.as_ref().map(|c| {
            let (ceilings, node) = (c.clone(), spec.name.clone());
            tokio::task::spawn_blocking(move || ceilings.enter(&node, pid))
        });
        tracing::info!(
            node = %spec.name,
            pid,
            port = spec.port,
            config = if installed == Installed::Written { "rendered" } else { "kept" },
            "redis-server spawned"
        );

        let deadline = Instant::now() + timeout;
        let outcome = tokio::select! {
            status = child.wait() => Err(status),
            ready = tokio::time::timeout_at(deadline, self.wait_ready(spec, &paths, pid)) => Ok(ready),
        };
        if let Some(entering) = entering {
            let entered = entering
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
            if let Err(e) = entered {
                tracing::error!(node = %spec.name, pid, error = %e, "cannot put redis-server into its cgroup; killing it");
                if outcome.is_ok() {
                    // Still our unreaped child (it has not exited): its pid is its own.
                    let _ = child.start_kill();
                    let _ = tokio::time::timeout(SIGKILL_GRACE, child.wait()).await;
                }
                process::remove_stale_pid_file(&self.config, &paths);
                return Err(io_err(format!("{}: entering its cgroup", spec.name))(e));
            }
        }
        match outcome {
            Ok(Ok(handle)) => {
                tracing::info!(node = %spec.name, pid, run_id = %handle.run_id, "redis-server ready");
                reap_in_background(child, spec.name.clone(), pid);
                Ok(handle)
            }
            Ok(Err(_elapsed)) => {
                tracing::warn!(node = %spec.name, pid, ?timeout, "redis-server not ready in time; killing it");
                // Still our unreaped child: its pid cannot have been reused.
                if let Err(e) = child.start_kill() {
                    tracing::warn!(node = %spec.name, pid, error = %e, "cannot kill redis-server");
                }
                match tokio::time::timeout(SIGKILL_GRACE, child.wait()).await {
                    Ok(_) => {}
                    Err(_) => {
                        tracing::error!(node = %spec.name, pid, "redis-server survived SIGKILL");
                        return Err(EngineError::StillRunning { pid });
                    }
                }
                process::remove_stale_pid_file(&self.config, &paths);
                Err(EngineError::TimedOut {
                    after: timeout,
                    log_tail: process::log_tail(&paths),
                })
            }
            Err(status) => {
                let status = status.map_err(|e| {
                    // Cannot tell whether it runs: do not leave a half-started process behind.
                    let _ = child.start_kill();
                    io_err(format!("waiting for pid {pid}"))(e)
                })?;
                process::remove_stale_pid_file(&self.config, &paths);
                let log_tail = process::log_tail(&paths);
                tracing::warn!(node = %spec.name, pid, %status, "redis-server exited during start");
                match (status.code(), status.signal()) {
                    (Some(code), _) => Err(EngineError::Exited { code, log_tail }),
                    (None, Some(signal)) => Err(EngineError::Signalled { signal, log_tail }),
                    (None, None) => Err(EngineError::Exited { code: -1, log_tail }),
                }
            }
        }
    }

    /// After a crsd restart: is this node's redis-server running and answering? The pid file
    /// (or a /proc scan) must lead to a live `redis-server <dir>/redis.conf` process, and a
    /// PING + INFO as the admin user must come back from that very pid on the node's port.
    /// Nothing is ever signalled. `Ok(None)` covers "not running" as well as "running but not
    /// answering (yet)": `start` then waits for it rather than starting a second process.
    pub async fn adopt(&self, spec: &NodeSpec) -> Result<Option<NodeHandle>, EngineError> {
        let paths = self.node_paths(spec)?;
        let Some(pid) = process::find_running(&self.config, &paths) else {
            return Ok(None);
        };
        match admin::probe(&self.config, spec).await {
            Ok(p) if p.is(pid, spec, &paths) => {
                tracing::info!(node = %spec.name, pid, run_id = %p.run_id, "adopted running redis-server");
                self.conform_running(spec, pid).await;
                Ok(Some(p.handle()))
            }
            Ok(p) => {
                tracing::warn!(node = %spec.name, pid, answered_pid = p.pid, answered_port = p.port,
                    "another redis-server answers on this node's port");
                Ok(None)
            }
            Err(e) => {
                tracing::info!(node = %spec.name, pid, error = %e, "redis-server running but not answering");
                Ok(None)
            }
        }
    }

    /// For a node that runs (e.g. found by a crsd that just started): makes it what a start
    /// by this version would make it, without restarting it: in its cgroup with the spec's
    /// ceiling, and the customer's ACL rules of this version (`ACL SETUSER` + `CONFIG
    /// REWRITE`, as a password change). Returns its pid, `None` if it does not run. Failures
    /// are logged, not returned: a node that runs is better left running than stopped for it.
    pub async fn conform(&self, spec: &NodeSpec) -> Result<Option<u32>, EngineError> {
        let paths = self.node_paths(spec)?;
        let Some(pid) = process::find_running(&self.config, &paths) else {
            return Ok(None);
        };
        self.conform_running(spec, pid).await;
        Ok(Some(pid))
    }

    pub(crate) async fn conform_running(&self, spec: &NodeSpec, pid: u32) {
        self.conform_ceiling(spec, pid);
        match self.conform_acl(spec).await {
            Ok(true) => tracing::info!(node = %spec.name, pid, "customer's ACL rules updated"),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(node = %spec.name, pid, error = ?e, "cannot update the customer's ACL rules")
            }
        }
    }

    /// The running node in its cgroup with the spec's ceiling (failures logged).
    pub(crate) fn conform_ceiling(&self, spec: &NodeSpec, pid: u32) {
        if let Some(c) = &self.ceilings {
            let placed = c.prepare(&spec.name, spec.maxmemory_mb).and_then(|()| {
                if c.contains(&spec.name, pid) {
                    Ok(false)
                } else {
                    c.enter(&spec.name, pid).map(|()| true)
                }
            });
            match placed {
                Ok(true) => {
                    tracing::info!(node = %spec.name, pid, "running redis-server moved into its cgroup")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(node = %spec.name, pid, error = %e, "cannot put the running redis-server into its cgroup; it runs without a ceiling")
                }
            }
        }
    }

    /// Sets the `default` user's command, key and channel rules to this version's when
    /// `ACL GETUSER` shows others (the password is kept). True if they changed.
    pub(crate) async fn conform_acl(&self, spec: &NodeSpec) -> Result<bool, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let user: redis::Value = redis::cmd("ACL")
            .arg("GETUSER")
            .arg("default")
            .query_async(&mut con)
            .await?;
        // Compared as sets: redis lists single commands in its hash table's order.
        let tokens = |s: &str| {
            let mut v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
            v.sort();
            v
        };
        let users_added = self.conform_internal_users(spec, &mut con).await?;
        let current = admin::acl_field(&user, "commands").unwrap_or_default();
        if tokens(&current) == tokens(config::DEFAULT_USER_COMMANDS) {
            if users_added {
                config_rewrite(&mut con).await?;
            }
            return Ok(users_added);
        }
        let mut cmd = redis::cmd("ACL");
        cmd.arg("SETUSER")
            .arg("default")
            .arg("resetkeys")
            .arg("resetchannels")
            .arg("nocommands");
        for rule in config::DEFAULT_USER_RULES.split_whitespace() {
            cmd.arg(rule);
        }
        cmd.query_async::<()>(&mut con).await?;
        config_rewrite(&mut con).await?;
        Ok(true)
    }

    /// Adds the internal users for Sentinel, the proxy's check and the exporter (see
    /// `config::internal_users`) to a node started by an earlier version that did not have
    /// them. True if any was added.
    async fn conform_internal_users(
        &self,
        spec: &NodeSpec,
        con: &mut redis::aio::MultiplexedConnection,
    ) -> Result<bool, EngineError> {
        let mut added = false;
        for (user, rules) in config::internal_users() {
            let exists: redis::Value = redis::cmd("ACL")
                .arg("GETUSER")
                .arg(user)
                .query_async(con)
                .await?;
            if !matches!(exists, redis::Value::Nil) {
                continue;
            }
            let secret = crate::internal_secret(&spec.admin_secret, user);
            let mut cmd = redis::cmd("ACL");
            cmd.arg("SETUSER")
                .arg(user)
                .arg("reset")
                .arg("on")
                .arg(format!("#{}", acl_sha256_hex(&secret)));
            for rule in rules.split_whitespace() {
                cmd.arg(rule);
            }
            cmd.query_async::<()>(con).await?;
            added = true;
        }
        Ok(added)
    }

    /// The pid of this node's redis-server, if it is seen running.
    pub fn running_pid(&self, spec: &NodeSpec) -> Option<u32> {
        match self.liveness(spec) {
            Liveness::Alive(pid) => Some(pid),
            _ => None,
        }
    }

    /// Cheap liveness check for a supervisor loop: does this node's redis-server process exist
    /// (not a zombie, cmdline proves it is ours)? No network. [`Liveness::Unknown`] when the
    /// engine could not look (no file descriptor left, /proc unreadable for another reason
    /// than the process being gone): that says nothing about the node, and a supervisor must
    /// not restart it on that ground.
    pub fn liveness(&self, spec: &NodeSpec) -> Liveness {
        let paths = match self.node_paths(spec) {
            Ok(paths) => paths,
            Err(e) => return Liveness::Unknown(e.to_string()),
        };
        match process::observe(&self.config, &paths) {
            Ok(Some(pid)) => Liveness::Alive(pid),
            Ok(None) => Liveness::Dead,
            Err(e) => Liveness::Unknown(e.to_string()),
        }
    }

    /// `liveness` is [`Liveness::Alive`].
    pub fn is_alive(&self, spec: &NodeSpec) -> bool {
        matches!(self.liveness(spec), Liveness::Alive(_))
    }

    /// Stops gracefully: SHUTDOWN as admin (redis fsyncs the AOF), wait; then SIGTERM, wait;
    /// then SIGKILL. Succeeds at once if the node is not running.
    pub async fn stop(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let paths = self.node_paths(spec)?;
        let Some(pid) = process::find_running(&self.config, &paths) else {
            process::remove_stale_pid_file(&self.config, &paths);
            return Ok(());
        };
        tracing::info!(node = %spec.name, pid, "stopping redis-server");
        let cfg = &self.config;

        let mut gone = self.shutdown_gracefully(spec, &paths, pid).await;
        if !gone {
            tracing::warn!(node = %spec.name, pid, "redis-server still running; sending SIGTERM");
            process::signal_ours(pid, libc::SIGTERM, cfg, &paths)?;
            gone = process::wait_gone(pid, cfg, &paths, Instant::now() + SIGTERM_GRACE).await;
        }
        if !gone {
            tracing::warn!(node = %spec.name, pid, "redis-server ignores SIGTERM; sending SIGKILL");
            process::signal_ours(pid, libc::SIGKILL, cfg, &paths)?;
            gone = process::wait_gone(pid, cfg, &paths, Instant::now() + SIGKILL_GRACE).await;
        }
        if !gone {
            return Err(EngineError::StillRunning { pid });
        }
        process::remove_stale_pid_file(cfg, &paths);
        tracing::info!(node = %spec.name, pid, "redis-server stopped");
        Ok(())
    }

    /// Stops the node (if running) and removes its folder, restore folders included. Refuses
    /// to delete a non-empty folder that holds no redis.conf rendered by this crate (a wrong
    /// `dir` must not cost anyone their files), unless it holds nothing but the folders of a
    /// restore staged for a node that never started.
    ///
    /// The checked folder is renamed aside before it is deleted: a crash of crsd half-way
    /// through the deletion (its redis.conf already unlinked, other files not yet) must not
    /// leave a folder the next `destroy`, resuming the same task, refuses as not crsd's.
    pub async fn destroy(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let paths = self.node_paths(spec)?;
        self.stop(spec).await?;
        self.remove_cgroup(spec).await;
        // What an interrupted destroy moved aside was checked before it was moved.
        durable::remove_dir_all_if_exists(&durable::trash_path(&paths.dir))?;
        match fs::symlink_metadata(&paths.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(format!("inspecting {}", paths.dir.display()))(e)),
            Ok(m) if !m.is_dir() => {
                return Err(EngineError::Config(format!(
                    "{} is not a folder; not removing it",
                    paths.dir.display()
                )))
            }
            Ok(_) => {}
        }
        if config::is_rendered_by_us(&paths.conf) || restore::holds_only_restore_folders(&paths)? {
            let parent = paths.dir.parent().ok_or_else(|| {
                EngineError::Config(format!("{} has no parent folder", paths.dir.display()))
            })?;
            durable::discard_dir(parent, &paths.dir)?;
        } else {
            // Empty folder (e.g. a start that failed validation after creating it): fine.
            fs::remove_dir(&paths.dir).map_err(|e| {
                EngineError::Config(format!(
                    "{} holds no crsd redis.conf; not removing it ({e})",
                    paths.dir.display()
                ))
            })?;
        }
        tracing::info!(node = %spec.name, dir = %paths.dir.display(), "node folder removed");
        Ok(())
    }

    /// `CONFIG SET maxmemory <mb>mb`, then `CONFIG REWRITE` so it survives a restart. The
    /// node's memory ceiling follows: raised before maxmemory grows, lowered after it shrank,
    /// so the ceiling is never below what redis may use.
    pub async fn set_maxmemory(&self, spec: &NodeSpec, mb: u64) -> Result<(), EngineError> {
        let value = config::maxmemory_arg(mb)?;
        let mut con = self.admin_connection(spec).await?;
        let growing = match &self.ceilings {
            None => None,
            Some(_) => {
                let pair: Vec<String> = redis::cmd("CONFIG")
                    .arg("GET")
                    .arg("maxmemory")
                    .query_async(&mut con)
                    .await?;
                let current: u64 = pair.get(1).and_then(|v| v.parse().ok()).unwrap_or(0);
                Some(mb * 1024 * 1024 >= current)
            }
        };
        if growing == Some(true) {
            self.set_ceiling(spec, mb)?;
        }
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(&value)
            .query_async::<()>(&mut con)
            .await?;
        config_rewrite(&mut con).await?;
        if growing == Some(false) {
            self.set_ceiling(spec, mb)?;
        }
        tracing::info!(node = %spec.name, maxmemory = %value, "maxmemory changed");
        Ok(())
    }

    fn set_ceiling(&self, spec: &NodeSpec, mb: u64) -> Result<(), EngineError> {
        if let Some(c) = &self.ceilings {
            c.prepare(&spec.name, mb)
                .map_err(io_err(format!("{}: setting its memory ceiling", spec.name)))?;
            tracing::info!(node = %spec.name, limit_bytes = c.config().limit_bytes(mb), "memory ceiling changed");
        }
        Ok(())
    }

    /// Removes the node's cgroup after its process is gone (its forks may take a moment). A
    /// cgroup that cannot be removed is logged and left: it must not keep the node's data.
    async fn remove_cgroup(&self, spec: &NodeSpec) {
        let Some(c) = &self.ceilings else {
            return;
        };
        let deadline = Instant::now() + CGROUP_REMOVE_GRACE;
        let mut backoff = Backoff::process();
        loop {
            match c.remove(&spec.name) {
                Ok(()) => return,
                Err(e) if Instant::now() >= deadline => {
                    tracing::warn!(node = %spec.name, error = %e, "cannot remove the node's cgroup; left behind");
                    return;
                }
                Err(_) => backoff.wait().await,
            }
        }
    }

    /// `ACL SETUSER default on resetpass #<hex>` (`nopass` for an empty hash), then
    /// `CONFIG REWRITE`. Afterwards the old password fails AUTH. ACLs are not replicated: call it on the master and on the replica.
    /// Connections already authenticated as `default` stay open.
    pub async fn set_default_password(
        &self,
        spec: &NodeSpec,
        sha256_hex: &str,
    ) -> Result<(), EngineError> {
        let pass = config::default_user_pass(sha256_hex)?;
        let mut con = self.admin_connection(spec).await?;
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("default")
            .arg("on")
            .arg("resetpass")
            .arg(pass)
            .query_async::<()>(&mut con)
            .await?;
        config_rewrite(&mut con).await?;
        tracing::info!(node = %spec.name, "default user's password changed");
        Ok(())
    }

    /// `FLUSHALL SYNC`. On a master (the replica follows; a replica refuses writes).
    pub async fn flush_all(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let mut con = self.admin_connection(spec).await?;
        redis::cmd("FLUSHALL")
            .arg("SYNC")
            .query_async::<()>(&mut con)
            .await?;
        tracing::info!(node = %spec.name, "flushed all data");
        Ok(())
    }

    /// `used_memory` from `INFO memory`, in bytes.
    pub async fn used_memory_bytes(&self, spec: &NodeSpec) -> Result<u64, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let info = admin::info(&mut con, "memory").await?;
        admin::field(&info, "used_memory")
    }

    /// Applies user parameters live (`CONFIG SET` each) and persists them (`CONFIG REWRITE`).
    /// Validated like the rendered config; a value redis refuses is an error and the
    /// parameters set before it stay set (the caller sets the old values back).
    pub async fn set_params(
        &self,
        spec: &NodeSpec,
        params: &[(String, String)],
    ) -> Result<(), EngineError> {
        for (name, value) in params {
            config::check_param(name, value)?;
        }
        let mut con = self.admin_connection(spec).await?;
        for (name, value) in params {
            redis::cmd("CONFIG")
                .arg("SET")
                .arg(name)
                .arg(value)
                .query_async::<()>(&mut con)
                .await?;
        }
        config_rewrite(&mut con).await
    }

    /// `CONFIG GET name` as the admin user.
    pub async fn get_param(&self, spec: &NodeSpec, name: &str) -> Result<String, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let pair: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg(name)
            .query_async(&mut con)
            .await?;
        pair.get(1)
            .cloned()
            .ok_or_else(|| EngineError::Protocol(format!("CONFIG GET {name} answered {pair:?}")))
    }

    /// For a replica: `master_link_status:up` and `master_sync_in_progress:0`.
    /// [`EngineError::WrongRole`] if the node is a master.
    pub async fn replica_in_sync(&self, spec: &NodeSpec) -> Result<bool, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let info = admin::info(&mut con, "replication").await?;
        let role: String = admin::field(&info, "role")?;
        if role != "slave" {
            return Err(EngineError::WrongRole {
                expected: Role::Replica,
                actual: role,
            });
        }
        let link: String = admin::field(&info, "master_link_status")?;
        let syncing: u64 = admin::field(&info, "master_sync_in_progress")?;
        Ok(link == "up" && syncing == 0)
    }

    /// For a replica: waits until [`Engine::replica_in_sync`] holds, i.e. the replica has
    /// loaded the master's data set and its link is up (the stream itself may start up to a
    /// second later: see [`Engine::replica_streams`]). This is what a new or restarted
    /// pair waits for: the master's own view lags behind (it marks the replica online only
    /// after its cron notices the transfer ended, up to 1/hz later).
    ///
    /// A replica that found its master not yet listening retries only from its once-a-second
    /// cron. When the pair was started together that is the common race, so a replica that
    /// `ROLE` shows waiting for that cron (state `connect`, not `connecting` or further), or
    /// whose link stays down without a sync in progress for [`REPLICA_NUDGE_AFTER`], is told
    /// its master again (`REPLICAOF NO ONE`, then `REPLICAOF host port`, which connects at
    /// once). That happens once per call; the replica's data is replaced by the master's
    /// either way.
    pub async fn wait_replica_synced(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        self.wait_linked(spec, timeout, true).await
    }

    /// [`Engine::wait_replica_synced`] without telling the replica its master again: that
    /// (`REPLICAOF NO ONE` first) would give the replica a replication id of its own and so
    /// cost a full sync, which a replica started by [`Engine::start_restored`] avoids by
    /// continuing from the restored RDB's offset. Its own cron connects it within a second.
    pub async fn wait_replica_linked(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        self.wait_linked(spec, timeout, false).await
    }

    async fn wait_linked(
        &self,
        spec: &NodeSpec,
        timeout: Duration,
        nudge: bool,
    ) -> Result<(), EngineError> {
        let not_in_sync = || EngineError::ReplicasNotInSync {
            wanted: 1,
            caught_up: 0,
            after: timeout,
        };
        let deadline = Instant::now() + timeout;
        let mut con = self.admin_connection(spec).await?;
        let mut backoff = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(100),
            REPLICA_POLL_CAP,
        );
        let mut down_since: Option<Instant> = None;
        let mut nudged = false;
        loop {
            let info = tokio::time::timeout_at(deadline, admin::info(&mut con, "replication"))
                .await
                .map_err(|_| not_in_sync())??;
            let role: String = admin::field(&info, "role")?;
            if role != "slave" {
                return Err(EngineError::WrongRole {
                    expected: Role::Replica,
                    actual: role,
                });
            }
            let link: String = admin::field(&info, "master_link_status")?;
            let syncing: u64 = admin::field(&info, "master_sync_in_progress")?;
            if link == "up" && syncing == 0 {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(not_in_sync());
            }
            if syncing == 0 {
                let since = *down_since.get_or_insert(now);
                if nudge
                    && !nudged
                    && (now - since >= REPLICA_NUDGE_AFTER
                        || replica_waits_for_cron(&mut con).await?)
                {
                    if let Some((host, port)) = &spec.master {
                        tracing::info!(node = %spec.name, "replica not connected to its master yet; telling it again");
                        replicaof(&mut con, Some((host, *port))).await?;
                        nudged = true;
                    }
                }
            } else {
                down_since = None;
            }
            backoff.wait().await;
        }
    }

    /// Whether a replica receives its master's writes now: a write made on the master reaches
    /// it `within` (see [`Engine::wait_streaming`]).
    pub async fn replica_streams(
        &self,
        spec: &NodeSpec,
        within: Duration,
    ) -> Result<bool, EngineError> {
        let mut con = self.admin_connection(spec).await?;
        match self
            .wait_streaming(spec, &mut con, Instant::now() + within)
            .await
        {
            Ok(()) => Ok(true),
            Err(EngineError::ReplicasNotInSync { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A replica whose link is up may not receive its master's writes yet: after a diskless
    /// full sync the master streams only once the replica's first `REPLCONF ACK` arrives
    /// after the master noticed the transfer ended. When the replica's ACK right after
    /// loading comes before that (the transfer's child is reaped in the master's cron), the
    /// master waits for the next one, up to a second later, while both report the link up
    /// (measured with Redis 7.0: 1 pair in 25, most replicas of a 3-replica create). So a
    /// write is made on the master (a `PUBLISH` nobody listens to, which replicas receive)
    /// and the replica must reach the master's offset after it. A disk-based sync has no
    /// such gap but its transfer waits for the master's cron (about 100 ms more per create,
    /// measured), so creates keep the diskless sync and only Sentinel's choice waits for the
    /// stream (see the service's `keep_promotable`).
    async fn wait_streaming(
        &self,
        spec: &NodeSpec,
        con: &mut MultiplexedConnection,
        deadline: Instant,
    ) -> Result<(), EngineError> {
        let Some((host, port)) = &spec.master else {
            return Ok(());
        };
        let waited_from = Instant::now();
        let not_streaming = || EngineError::ReplicasNotInSync {
            wanted: 1,
            caught_up: 0,
            after: waited_from.elapsed(),
        };
        let master = NodeSpec {
            host: host.clone(),
            port: *port,
            role: Role::Master,
            master: None,
            ..spec.clone()
        };
        let mut mcon = self.admin_connection(&master).await?;
        redis::cmd("PUBLISH")
            .arg("__crsd__:sync")
            .arg("1")
            .query_async::<i64>(&mut mcon)
            .await?;
        let info = admin::info(&mut mcon, "replication").await?;
        let target: u64 = admin::field(&info, "master_repl_offset")?;
        let mut backoff = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(50),
            REPLICA_POLL_CAP,
        );
        loop {
            let info = tokio::time::timeout_at(deadline, admin::info(con, "replication"))
                .await
                .map_err(|_| not_streaming())??;
            let offset: u64 = admin::field(&info, "slave_repl_offset").unwrap_or(0);
            if offset >= target {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(not_streaming());
            }
            backoff.wait().await;
        }
    }

    /// Makes a running node follow the master its spec names (`REPLICAOF host port`), or
    /// serve as a master when it names none (`REPLICAOF NO ONE`), then persists it
    /// (`CONFIG REWRITE`). Nothing is sent when `ROLE` already matches: a replica that follows
    /// the right master keeps its link (no resync).
    pub async fn follow(&self, spec: &NodeSpec) -> Result<(), EngineError> {
        let mut con = self.admin_connection(spec).await?;
        let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut con).await?;
        let text = |v: Option<&redis::Value>| match v {
            Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
            Some(redis::Value::SimpleString(s)) => s.clone(),
            Some(redis::Value::Int(i)) => i.to_string(),
            _ => String::new(),
        };
        let current = match text(role.first()).as_str() {
            "slave" => Some((text(role.get(1)), text(role.get(2)))),
            _ => None,
        };
        let wanted = spec
            .master
            .as_ref()
            .map(|(host, port)| (host.clone(), port.to_string()));
        if current == wanted {
            return Ok(());
        }
        match &spec.master {
            // Straight to the new master, not through `REPLICAOF NO ONE` as `replicaof` does:
            // that would drop the replication id the replica could continue from.
            Some((host, port)) => {
                redis::cmd("REPLICAOF")
                    .arg(host)
                    .arg(*port)
                    .query_async::<()>(&mut con)
                    .await?
            }
            None => replicaof(&mut con, None).await?,
        }
        config_rewrite(&mut con).await?;
        tracing::info!(node = %spec.name, master = ?spec.master, "node follows its master as the database says");
        Ok(())
    }

    /// Moves the node's running redis-server from port `from` to `spec.port` without a
    /// restart (`CONFIG SET port`, Redis 7: the listening socket moves, open connections stay;
    /// the rendered config takes the new port at the next start). Idempotent: a node that
    /// already answers at `spec.port` is left alone (false); the process at `from` must be
    /// this node's (its pid), or nothing is done.
    pub async fn move_port(&self, spec: &NodeSpec, from: u16) -> Result<bool, EngineError> {
        if admin::probe(&self.config, spec).await.is_ok() {
            return Ok(false);
        }
        let Some(pid) = self.running_pid(spec) else {
            return Ok(false);
        };
        let at_old = NodeSpec {
            port: from,
            ..spec.clone()
        };
        let probe = admin::probe(&self.config, &at_old).await?;
        if probe.pid != pid {
            return Err(EngineError::Protocol(format!(
                "port {from} is served by pid {}, not by node {} (pid {pid})",
                probe.pid, spec.name
            )));
        }
        let mut con = self.admin_connection(&at_old).await?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("port")
            .arg(spec.port)
            .query_async::<()>(&mut con)
            .await?;
        tracing::info!(node = %spec.name, from, to = spec.port, "node moved to its own port, live");
        Ok(true)
    }

    /// For a master: waits until at least `n` replicas are online and have acknowledged the
    /// replication offset the master had when the call began (every write acknowledged before
    /// this call is on them). Replicas acknowledge once a second, so expect up to ~1 s even
    /// when they are current.
    pub async fn wait_replicas(
        &self,
        spec: &NodeSpec,
        n: usize,
        timeout: Duration,
    ) -> Result<(), EngineError> {
        let deadline = Instant::now() + timeout;
        let mut con = self.admin_connection(spec).await?;
        let info = admin::info(&mut con, "replication").await?;
        let role: String = admin::field(&info, "role")?;
        if role != "master" {
            return Err(EngineError::WrongRole {
                expected: Role::Master,
                actual: role,
            });
        }
        let target: u64 = admin::field(&info, "master_repl_offset")?;
        let mut caught_up = 0;
        let mut backoff = Backoff::new(
            Duration::from_millis(1),
            Duration::from_millis(100),
            REPLICA_POLL_CAP,
        );
        loop {
            let Ok(info) =
                tokio::time::timeout_at(deadline, admin::info(&mut con, "replication")).await
            else {
                break;
            };
            caught_up = admin::replicas(&info?)?
                .iter()
                .filter(|r| r.state == "online" && r.offset >= target)
                .count();
            if caught_up >= n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                break;
            }
            backoff.wait().await;
        }
        Err(EngineError::ReplicasNotInSync {
            wanted: n,
            caught_up,
            after: timeout,
        })
    }

    /// A connection authenticated as the admin user (for backups and other callers).
    /// [`EngineError::NotRunning`] if nothing listens on the node's port.
    pub async fn admin_connection(
        &self,
        spec: &NodeSpec,
    ) -> Result<MultiplexedConnection, EngineError> {
        admin::admin_connection(&self.config, spec).await
    }

    /// Polls until the server answering on the node's port is `pid`, started for this node.
    async fn wait_ready(&self, spec: &NodeSpec, paths: &NodePaths, pid: u32) -> NodeHandle {
        let mut backoff = Backoff::process();
        loop {
            match admin::probe(&self.config, spec).await {
                Ok(p) if p.is(pid, spec, paths) => return p.handle(),
                Ok(p) => {
                    tracing::debug!(node = %spec.name, answered_pid = p.pid, "someone else answers")
                }
                Err(e) => tracing::trace!(node = %spec.name, error = %e, "not ready yet"),
            }
            backoff.wait().await;
        }
    }

    /// `start` found a running process: wait for it to answer. `Ok(None)` if it exits.
    async fn await_existing(
        &self,
        spec: &NodeSpec,
        paths: &NodePaths,
        pid: u32,
        timeout: Duration,
    ) -> Result<Option<NodeHandle>, EngineError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Backoff::process();
        loop {
            if !process::is_our_redis(pid, &self.config, paths) {
                return Ok(None);
            }
            if let Ok(Ok(p)) =
                tokio::time::timeout_at(deadline, admin::probe(&self.config, spec)).await
            {
                if p.is(pid, spec, paths) {
                    return Ok(Some(p.handle()));
                }
            }
            if Instant::now() >= deadline {
                return Err(EngineError::NotReady {
                    pid,
                    after: timeout,
                });
            }
            backoff.wait().await;
        }
    }
}

impl Engine {
    /// SHUTDOWN as admin until redis accepts it and exits, within [`SHUTDOWN_GRACE`].
    ///
    /// redis refuses SHUTDOWN while it cannot persist safely, e.g. "Writing initial AOF,
    /// can't exit" right after a replica's full sync; that is transient, so the command is
    /// repeated rather than escalated to signals at once (SIGTERM is refused the same way).
    async fn shutdown_gracefully(&self, spec: &NodeSpec, paths: &NodePaths, pid: u32) -> bool {
        let cfg = &self.config;
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let mut refusals = 0u32;
        loop {
            match tokio::time::timeout_at(deadline, admin::shutdown(cfg, spec)).await {
                Ok(Ok(Shutdown::Accepted)) | Err(_) => {
                    return process::wait_gone(pid, cfg, paths, deadline).await;
                }
                Ok(Ok(Shutdown::Refused(reason))) => {
                    if refusals == 0 {
                        tracing::warn!(node = %spec.name, pid, %reason, "redis-server refused SHUTDOWN; retrying");
                    }
                    refusals += 1;
                }
                Ok(Err(e)) => {
                    // Not answering, or not accepting the admin credentials: signals next.
                    tracing::warn!(node = %spec.name, pid, error = %e, "cannot send SHUTDOWN");
                    return !process::is_our_redis(pid, cfg, paths);
                }
            }
            if !process::is_our_redis(pid, cfg, paths) {
                return true;
            }
            if Instant::now() + SHUTDOWN_RETRY >= deadline {
                return false;
            }
            tokio::time::sleep(SHUTDOWN_RETRY).await;
        }
    }
}

/// Creates the node folder and makes it 0700 (it holds the replica's masterauth).
pub(crate) fn prepare_dir(paths: &NodePaths) -> Result<(), EngineError> {
    fs::create_dir_all(&paths.dir).map_err(io_err(format!("creating {}", paths.dir.display())))?;
    fs::set_permissions(&paths.dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("chmod 0700 {}", paths.dir.display())))
}

/// Whether a replica is idle until its next replication cron: `ROLE` state `connect` (it has
/// a master but no connection attempt under way).
async fn replica_waits_for_cron(con: &mut MultiplexedConnection) -> Result<bool, EngineError> {
    let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(con).await?;
    Ok(
        matches!(role.get(3), Some(redis::Value::BulkString(s)) if s == b"connect")
            || matches!(role.get(3), Some(redis::Value::SimpleString(s)) if s == "connect"),
    )
}

/// `REPLICAOF NO ONE` followed, for `Some`, by `REPLICAOF host port`: the replica drops its
/// (possibly waiting) link and connects to the master at once.
async fn replicaof(
    con: &mut MultiplexedConnection,
    master: Option<(&str, u16)>,
) -> Result<(), EngineError> {
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query_async::<()>(con)
        .await?;
    if let Some((host, port)) = master {
        redis::cmd("REPLICAOF")
            .arg(host)
            .arg(port)
            .query_async::<()>(con)
            .await?;
    }
    Ok(())
}

pub(crate) async fn config_rewrite(con: &mut MultiplexedConnection) -> Result<(), EngineError> {
    redis::cmd("CONFIG")
        .arg("REWRITE")
        .query_async::<()>(con)
        .await?;
    Ok(())
}

/// The started redis-server is our child until it exits: reap it then (no zombie left in a
/// long-running crsd) and log how it ended, which is the first thing to read after a crash.
fn reap_in_background(mut child: tokio::process::Child, node: String, pid: u32) {
    tokio::spawn(async move {
        match child.wait().await {
            Ok(status) if status.success() => {
                tracing::info!(node = %node, pid, "redis-server exited")
            }
            Ok(status) => tracing::warn!(node = %node, pid, %status, "redis-server exited"),
            Err(e) => tracing::warn!(node = %node, pid, error = %e, "cannot wait for redis-server"),
        }
    });
}
