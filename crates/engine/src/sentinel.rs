//! crsd's Redis Sentinels: a small fixed set of `redis-sentinel` processes (3 by default,
//! quorum 2) that watch the master of every instance and promote a replica when it dies.
//!
//! # One set for the host, outliving crsd
//!
//! Sentinel is the part of Redis that decides a failover: a master is subjectively down for a
//! sentinel after `down-after-milliseconds` without a valid reply, objectively down once
//! `quorum` sentinels agree, and then one sentinel, elected by a majority, promotes the best
//! replica and repoints the others. crsd runs one such set for all instances (an instance is
//! one *monitor*, named after its id) rather than a set per instance: three processes whatever
//! the number of instances. Like the nodes, the sentinels run detached (see `daemon.rs`) and
//! outlive crsd, so a failover never depends on crsd being up; the next crsd adopts them.
//!
//! # Files: `<root>/<port>/` (0700)
//!
//! `sentinel.conf` (0600), `sentinel.pid`, `sentinel.log`. The config file is written only
//! when absent, at a sentinel's first start. From then on Sentinel owns it: it rewrites it
//! with every monitor and its settings, its own id, the epochs, the replicas and other
//! sentinels it learnt of, so a sentinel that restarts (after a crash, after a host reboot)
//! comes back watching every instance it watched, at the address it last knew. crsd never
//! renders it again: the bind address and the secret stay what they were at the first start,
//! so the caller must keep the secret stable.
//!
//! # Recognised by its command line
//!
//! The file says `set-proc-title no`, which Sentinel honours like redis-server does: its
//! command line stays `<program> <root>/<port>/sentinel.conf`, which is how `Daemon` tells a
//! sentinel of this set from any other process, by pid file or by a scan of /proc.
//!
//! # Secrets
//!
//! The set has one secret of its own: each sentinel's `requirepass` (crsd logs in as the
//! `default` user with it) and `sentinel sentinel-pass` (the sentinels log in to each other
//! with it). It is in plaintext in sentinel.conf, which stays 0600 through Sentinel's
//! rewrites because it inherits the process's umask 077. What Sentinel logs in to the nodes
//! with (the instance's [`crate::SENTINEL_USER`] and its derived secret) only ever travels in
//! `SENTINEL SET`, which Sentinel writes to its config file but logs as `******`.
//!
//! # What a failover looks like from here
//!
//! After a master dies, [`SentinelSet::masters`] reports the promoted replica's address once
//! the elected sentinel has seen it answer as a master (during a failover Sentinel polls
//! `INFO` once a second), and the other sentinels follow through their hello messages with a
//! higher config epoch, which is why views are merged by epoch. Sentinel refuses to fail the
//! same master over again within twice the failover timeout, but only at the same address:
//! a switch to a new master clears that guard.
//!
//! # A floor under down-after
//!
//! When a sentinel switches a monitor to the new master, it counts the new master's silence
//! from that moment, but it reconnects to an address at most once a second (its ping period,
//! counted from its last attempt, which after a kill -9 was a retry at the dead address), so
//! it may only reach the new master up to ~1.1 s after the switch. With a shorter
//! `down-after-milliseconds` it can deem the new master down before it has even reached it;
//! two such sentinels make it objectively down and fail it over again (the guard against
//! repeat failovers does not hold across a switch). Measured on a master and one replica,
//! kill -9 of the master: with 500 ms a sentinel deemed the new master down in 4 of 8 runs,
//! and once the old master was back as a replica the two nodes swapped roles every 1.2 s,
//! promoting a replica that had not even connected yet (what the master acknowledged
//! meanwhile is lost that way; without a healthy replica the second failover is only
//! aborted); with 1000 ms, 1 run of 8; with 1500 ms, none of 21. Hence the default of 1500 ms, and a warning below
//! [`MIN_SAFE_DOWN_AFTER_MS`]. It delays [`SentinelSet::masters`] little: it showed the new
//! master 2.0-2.2 s after the kill with 500 ms, 2.2-2.4 s with 1000 ms, 2.7-2.9 s with
//! 1500 ms (the promotion itself comes about 0.9 s earlier: Sentinel confirms it by polling
//! `INFO` once a second).
//!
//! # Sentinel's timers
//!
//! crsd shortens a sentinel's own periods with `SENTINEL DEBUG` ([`SentinelTimers`]): the
//! ping and reconnect period to 300 ms (which lowers the floor above to 500 ms), `INFO` to 1 s
//! (a sentinel learns a new master's replicas within a second instead of ten) and hello
//! messages to 500 ms. The ping period must stay above 200 ms: while a master is down, a
//! sentinel only promotes a replica whose `INFO` it refreshed within five ping periods, and it
//! refreshes a down master's replicas once a second whatever its `INFO` period. At 200 ms
//! that window was exactly the refresh period, and some failovers were aborted with
//! `-failover-abort-no-good-slave`, then retried twice the failover timeout later (outages of
//! 7.5-8.5 s, 2 in 40 bench drills); Sentinel's own 1 s period gives a 5 s window.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisConnectionInfo};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::{connect_host_of, parse_bind};
use crate::daemon::{private_dir, write_private, Daemon};
use crate::error::io_err;
use crate::poll::Backoff;
use crate::process::{file_tail, set_private_umask, stat_is_zombie_or_gone};
use crate::EngineError;

/// A replica's INFO in a sentinel's view counts as recent below this age (the sentinel asks
/// every second).
const FRESH_INFO_MS: u64 = 1500;

/// Lets crsd set each instance's `client-reconfig-script` at run time (the sentinels require
/// a password).
const SCRIPTS_LINE: &str = "sentinel deny-scripts-reconfig no";

/// A sentinel on this host accepts a connection in microseconds: 200 ms means it is not there.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(200);
/// Every Sentinel command is small; the slowest (a config flush with fsync) takes milliseconds.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a started sentinel may take to answer before it is killed (it has no data to load:
/// it normally answers within milliseconds).
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// SIGTERM first (Sentinel flushes its config and exits), SIGKILL after this.
const STOP_GRACE: Duration = Duration::from_secs(5);

const CONF_FILE: &str = "sentinel.conf";
const PID_FILE: &str = "sentinel.pid";
const LOG_FILE: &str = "sentinel.log";

/// The smallest `down_after_ms` that cannot make the sentinels deem a master down that they
/// have just switched to: their reconnect period (1 s) plus a timer tick (up to 100 ms) plus
/// a round trip.
pub const MIN_SAFE_DOWN_AFTER_MS: u64 = 1200;

/// How crsd runs its sentinels.
#[derive(Clone)]
pub struct SentinelConfig {
    /// The `redis-sentinel` executable; a bare name is looked up in `PATH`.
    pub program: PathBuf,
    /// The one address the sentinels listen on, e.g. `127.0.0.1` (an unspecified address
    /// such as `0.0.0.0` is reached through loopback).
    pub bind: String,
    /// One sentinel per port.
    pub ports: Vec<u16>,
    /// How many sentinels must agree that a master is down before a failover.
    pub quorum: u32,
    /// Without a valid reply for this long, a sentinel deems a master down. Keep it above
    /// [`MIN_SAFE_DOWN_AFTER_MS`] (see "A floor under down-after" in the module docs).
    pub down_after_ms: u64,
    /// Sentinel's failover timeout; it also refuses a repeat failover of the same master
    /// within twice this (but not after a switch to a new master, see the module docs).
    pub failover_timeout_ms: u64,
    /// Each sentinel's folder is `<root>/<port>/`.
    pub root: PathBuf,
    /// The sentinels' own password (see the module docs), generated by the caller and kept
    /// stable: it is written into a sentinel's config file at its first start only. Printable
    /// ASCII without spaces, quotes or backslashes.
    pub secret: String,
    /// Sentinel's own timers (see "Sentinel's timers" in the module docs); `None` keeps
    /// Sentinel's defaults.
    pub timers: Option<SentinelTimers>,
}

/// The periods of a sentinel's own loops, set with `SENTINEL DEBUG` on every sentinel process
/// (they are not kept in its config file, so each new process gets them again).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SentinelTimers {
    /// PING period, and the least time between two reconnects to an address (Sentinel: 1000).
    /// Above 200 (see "Sentinel's timers" in the module docs).
    pub ping_period_ms: u64,
    /// `INFO` period, how soon a sentinel learns a master's new replicas (Sentinel: 10000).
    pub info_period_ms: u64,
    /// Hello messages, how soon sentinels find each other for a new master (Sentinel: 2000).
    pub publish_period_ms: u64,
}

impl Default for SentinelTimers {
    fn default() -> Self {
        SentinelTimers {
            ping_period_ms: 300,
            info_period_ms: 1000,
            publish_period_ms: 500,
        }
    }
}

impl SentinelTimers {
    /// The smallest safe `down_after_ms` with these timers: the reconnect period plus a
    /// timer tick and a round trip (see "A floor under down-after").
    pub fn down_after_floor_ms(&self) -> u64 {
        self.ping_period_ms + 200
    }
}

impl Default for SentinelConfig {
    fn default() -> Self {
        SentinelConfig {
            program: PathBuf::from("redis-sentinel"),
            bind: "127.0.0.1".to_string(),
            ports: vec![26379, 26380, 26381],
            quorum: 2,
            down_after_ms: 1500,
            failover_timeout_ms: 3000,
            root: PathBuf::from("sentinels"),
            secret: String::new(),
            timers: Some(SentinelTimers::default()),
        }
    }
}

impl fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("program", &self.program)
            .field("bind", &self.bind)
            .field("ports", &self.ports)
            .field("quorum", &self.quorum)
            .field("down_after_ms", &self.down_after_ms)
            .field("failover_timeout_ms", &self.failover_timeout_ms)
            .field("root", &self.root)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A master for the sentinels to watch.
#[derive(Clone, PartialEq, Eq)]
pub struct Monitored {
    /// The monitor's name: the instance id (`[A-Za-z0-9._-]`).
    pub name: String,
    /// The master's IP address (Sentinel runs with `resolve-hostnames no`).
    pub host: String,
    pub port: u16,
    /// The ACL user Sentinel logs in to the nodes as ([`crate::SENTINEL_USER`]).
    pub auth_user: String,
    /// Its secret ([`crate::internal_secret`] of the instance's admin secret).
    pub auth_pass: String,
    /// Run by every sentinel at `+switch-master` (`client-reconfig-script`, with
    /// `<name> <role> <state> <from-ip> <from-port> <to-ip> <to-port>`) and at each of its
    /// warnings (`notification-script`, with `<event> <description>`: among them
    /// `+promoted-slave`, as soon as the promoted replica answers master, up to a second
    /// before `+switch-master`): an executable file whose path has no whitespace or quotes.
    /// Sentinels accept it at run time because their config says `sentinel
    /// deny-scripts-reconfig no` (they require a password).
    pub reconfig_script: Option<PathBuf>,
}

impl fmt::Debug for Monitored {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitored")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("auth_user", &self.auth_user)
            .field("auth_pass", &"<redacted>")
            .field("reconfig_script", &self.reconfig_script)
            .finish()
    }
}

/// What the sentinels say about one monitored master (see [`SentinelSet::masters`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterView {
    pub name: String,
    /// The master's address as the sentinels know it: after a failover, the promoted replica.
    pub host: String,
    pub port: u16,
    /// Grows by one with every failover of this master.
    pub config_epoch: u64,
    /// A sentinel that reports this address flags it `s_down` or `o_down`.
    pub down: bool,
    /// The replicas Sentinel knows of (a dead former master counts, until a `reset`).
    pub num_replicas: u32,
    /// A sentinel is failing this master over right now.
    pub failover_in_progress: bool,
}

/// crsd's sentinels. Cheap to clone (all clones drive the same set).
#[derive(Clone, Debug)]
pub struct SentinelSet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cfg: SentinelConfig,
    /// One per configured port, in the order of `cfg.ports`.
    sentinels: Vec<(u16, Daemon)>,
    /// `ensure_running` and `stop_all` one at a time: two concurrent starts of the same
    /// sentinel would race for its port.
    lifecycle: tokio::sync::Mutex<()>,
    /// The pid each sentinel had when it got the configured timers.
    timed: std::sync::Mutex<HashMap<u16, u32>>,
}

/// What one sentinel made of a command sent to all of them.
enum Outcome<T> {
    Done(T),
    /// Nothing listens on its port: it does not run.
    NotRunning,
    /// It runs but could not be reached (timeout, secret refused) or refused the command.
    Failed(EngineError),
}

impl SentinelSet {
    /// The set described by `cfg`. A bare `program` name is resolved through `PATH` here, a
    /// relative `root` from the current folder, and the process umask becomes 077 (everything
    /// a sentinel writes, its rewritten config included, is private). Nothing starts yet.
    pub fn new(mut cfg: SentinelConfig) -> SentinelSet {
        set_private_umask();
        cfg.root = std::path::absolute(&cfg.root).unwrap_or_else(|_| cfg.root.clone());
        let sentinels = cfg
            .ports
            .iter()
            .map(|&port| {
                let dir = cfg.root.join(port.to_string());
                let conf = dir.join(CONF_FILE);
                let daemon = Daemon::new(
                    &cfg.program,
                    vec![OsString::from(conf.as_os_str())],
                    &dir,
                    &conf,
                    &dir.join(PID_FILE),
                    &dir.join(LOG_FILE),
                );
                (port, daemon)
            })
            .collect::<Vec<_>>();
        if let Some((_, first)) = sentinels.first() {
            cfg.program = first.program.clone();
        }
        SentinelSet {
            inner: Arc::new(Inner {
                cfg,
                sentinels,
                lifecycle: tokio::sync::Mutex::new(()),
                timed: std::sync::Mutex::default(),
            }),
        }
    }

    /// Gives every running sentinel process the configured timers, once per process.
    async fn apply_timers(&self, host: &str) {
        let cfg = &self.inner.cfg;
        let Some(t) = cfg.timers else {
            return;
        };
        for (port, daemon) in &self.inner.sentinels {
            let Some(pid) = daemon.find() else {
                continue;
            };
            let done = self
                .inner
                .timed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(port)
                == Some(&pid);
            if done {
                continue;
            }
            let set = async {
                let mut con = connect(host, *port, &cfg.secret).await?;
                redis::cmd("SENTINEL")
                    .arg("DEBUG")
                    .arg("ping-period")
                    .arg(t.ping_period_ms)
                    .arg("info-period")
                    .arg(t.info_period_ms)
                    .arg("publish-period")
                    .arg(t.publish_period_ms)
                    .query_async::<()>(&mut con)
                    .await?;
                Ok::<_, EngineError>(())
            };
            match set.await {
                Ok(()) => {
                    self.inner
                        .timed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(*port, pid);
                }
                Err(e) => {
                    tracing::warn!(port, error = %chain(&e), "cannot set the sentinel's timers")
                }
            }
        }
    }

    /// Starts every sentinel that does not run (those that do are adopted: they outlive
    /// crsd). A sentinel's config file is written only when absent (see the module docs).
    /// Waits until each started one answers `PING` with the set's secret and returns their
    /// ports. When one fails to start, the others are still started and the first failure is
    /// returned; a later call adopts those that came up.
    pub async fn ensure_running(&self) -> Result<Vec<u16>, EngineError> {
        let _one_at_a_time = self.inner.lifecycle.lock().await;
        let cfg = &self.inner.cfg;
        check_secret(&cfg.secret)?;
        let host = connect_host_of(&cfg.bind)?;
        let mut started = Vec::new();
        let mut first_err = None;
        for (port, daemon) in &self.inner.sentinels {
            if daemon.find().is_some() {
                continue;
            }
            match self.start_one(*port, daemon, &host).await {
                Ok(pid) => {
                    tracing::info!(port, pid, "sentinel started");
                    started.push(*port);
                }
                Err(e) => {
                    tracing::warn!(port, error = %e, "sentinel did not start");
                    first_err.get_or_insert(e);
                }
            }
        }
        self.apply_timers(&host).await;
        match first_err {
            Some(e) => Err(e),
            None => Ok(started),
        }
    }

    async fn start_one(&self, port: u16, daemon: &Daemon, host: &str) -> Result<u32, EngineError> {
        let cfg = &self.inner.cfg;
        private_dir(&daemon.dir).map_err(io_err(format!("creating {}", daemon.dir.display())))?;
        fs::set_permissions(&daemon.dir, fs::Permissions::from_mode(0o700))
            .map_err(io_err(format!("chmod 0700 {}", daemon.dir.display())))?;
        match fs::read_to_string(&daemon.conf) {
            Ok(text) if !text.lines().any(|l| l.trim() == SCRIPTS_LINE) => {
                // Written by an earlier release: scripts may be set at run time from now on
                // (Sentinel writes the setting back whenever it rewrites the file).
                let mut text = text;
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(SCRIPTS_LINE);
                text.push('\n');
                write_private(&daemon.conf, text.as_bytes())
                    .map_err(io_err(format!("writing {}", daemon.conf.display())))?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let text = render_conf(cfg, port, &daemon.dir)?;
                write_private(&daemon.conf, text.as_bytes())
                    .map_err(io_err(format!("writing {}", daemon.conf.display())))?;
            }
            Err(e) => return Err(io_err(format!("reading {}", daemon.conf.display()))(e)),
        }
        let pid = daemon.spawn()?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut backoff = Backoff::process();
        loop {
            // Not `daemon.is_ours(pid)`: right after the spawn, the command line can still
            // read empty (see `Daemon::spawn`), and the answer below names the pid anyway.
            if has_exited(pid) {
                return Err(not_started(port, daemon, "it exited".to_string()));
            }
            let last = match answering_pid(host, port, &cfg.secret).await {
                Ok(answering) if answering == pid => return Ok(pid),
                Ok(other) => format!("its port is answered by another process (pid {other})"),
                Err(e) => chain(&e),
            };
            if Instant::now() >= deadline {
                let _ = daemon.signal(pid, libc::SIGKILL);
                return Err(not_started(
                    port,
                    daemon,
                    format!("no answer within {START_TIMEOUT:?} ({last}), killed"),
                ));
            }
            backoff.wait().await;
        }
    }

    /// Restarts, one at a time, every running sentinel whose config predates
    /// `sentinel deny-scripts-reconfig no` (an earlier release's): without it a sentinel
    /// refuses a `client-reconfig-script` set at run time. Its monitors are in its config and
    /// come back with it; the two others decide meanwhile. Returns the restarted ports.
    pub async fn allow_reconfig_scripts(&self) -> Result<Vec<u16>, EngineError> {
        let _one_at_a_time = self.inner.lifecycle.lock().await;
        let host = connect_host_of(&self.inner.cfg.bind)?;
        let mut restarted = Vec::new();
        for (port, daemon) in &self.inner.sentinels {
            let allows = fs::read_to_string(&daemon.conf)
                .map(|t| t.lines().any(|l| l.trim() == SCRIPTS_LINE))
                .unwrap_or(true);
            if allows || daemon.find().is_none() {
                continue;
            }
            if !daemon.stop(STOP_GRACE).await? {
                continue;
            }
            let pid = self.start_one(*port, daemon, &host).await?;
            tracing::info!(port, pid, "sentinel restarted to accept reconfig scripts");
            restarted.push(*port);
        }
        drop(_one_at_a_time);
        if !restarted.is_empty() {
            self.apply_timers(&host).await;
        }
        Ok(restarted)
    }

    /// Which sentinels run now: (port, pid), `None` for one that does not.
    pub fn running(&self) -> Vec<(u16, Option<u32>)> {
        self.inner
            .sentinels
            .iter()
            .map(|(port, daemon)| (*port, daemon.find()))
            .collect()
    }

    /// Registers a master with every running sentinel: `SENTINEL MONITOR` unless it already
    /// watches that name, then `SENTINEL SET` of the Sentinel user and secret, the quorum,
    /// `down-after-milliseconds`, `failover-timeout` and `parallel-syncs 1`. Idempotent; a
    /// sentinel that already watches the name keeps the address it knows (after a failover it
    /// knows better than the caller) and only gets the settings.
    ///
    /// Sentinels that do not run are skipped: [`SentinelSet::monitored_by_each`] finds them
    /// once they run again. Fails when one that runs fails, or when none runs.
    pub async fn monitor(&self, m: &Monitored) -> Result<(), EngineError> {
        check_name(&m.name)?;
        if let Some(script) = &m.reconfig_script {
            let ok = script.to_str().is_some_and(|s| {
                !s.is_empty()
                    && !s.chars().any(|c| {
                        c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\')
                    })
            });
            if !ok {
                return Err(EngineError::Config(format!(
                    "a reconfig script path must have no whitespace or quotes, got {}",
                    script.display()
                )));
            }
        }
        m.host.parse::<std::net::IpAddr>().map_err(|_| {
            EngineError::Config(format!(
                "a monitored host must be an IP address, got {:?}",
                m.host
            ))
        })?;
        let cfg = &self.inner.cfg;
        if cfg.quorum == 0 || cfg.quorum as usize > cfg.ports.len() {
            return Err(EngineError::Config(format!(
                "quorum {} must be between 1 and the {} sentinels",
                cfg.quorum,
                cfg.ports.len()
            )));
        }
        let floor = cfg
            .timers
            .map_or(MIN_SAFE_DOWN_AFTER_MS, |t| t.down_after_floor_ms());
        if cfg.down_after_ms < floor {
            tracing::warn!(
                down_after_ms = cfg.down_after_ms,
                floor = MIN_SAFE_DOWN_AFTER_MS,
                "sentinel down-after is below its safe floor: a failover can be followed by \
                 another one straight away"
            );
        }
        let m = Arc::new(m.clone());
        let settings = (cfg.quorum, cfg.down_after_ms, cfg.failover_timeout_ms);
        let outcomes = self
            .on_each(move |con| monitor_one(con, m.clone(), settings))
            .await?;
        self.all_running_did(outcomes, "monitor")
    }

    /// `SENTINEL REMOVE` on every running sentinel; a name not monitored is fine.
    pub async fn remove(&self, name: &str) -> Result<(), EngineError> {
        self.on_each_named("REMOVE", name, "remove").await
    }

    /// `SENTINEL RESET` on every running sentinel: it forgets the master's replicas and
    /// sentinels and learns them again (so replicas that were removed disappear).
    pub async fn reset(&self, name: &str) -> Result<(), EngineError> {
        // The name is a glob pattern for RESET: check_name admits no pattern characters.
        self.on_each_named("RESET", name, "reset").await
    }

    /// `SENTINEL <sub> <name>` on every running sentinel; an unknown name is fine.
    async fn on_each_named(
        &self,
        sub: &'static str,
        name: &str,
        what: &'static str,
    ) -> Result<(), EngineError> {
        check_name(name)?;
        let name = name.to_string();
        let outcomes = self
            .on_each(move |con| {
                let name = name.clone();
                async move { sentinel_cmd_unless_unknown(con, sub, &name).await }
            })
            .await?;
        self.all_running_did(outcomes, what)
    }

    /// `SENTINEL MASTERS` from every reachable sentinel, merged per name: the view with the
    /// highest config epoch, and among those the address most sentinels report (ties: the
    /// sentinel of the lowest port). `down` if one of the sentinels reporting that address
    /// flags it down, `failover_in_progress` if any sentinel is failing it over. Errors only
    /// when no sentinel answers.
    pub async fn masters(&self) -> Result<HashMap<String, MasterView>, EngineError> {
        let outcomes = self
            .on_each(|mut con| async move {
                let raw: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("MASTERS")
                    .query_async(&mut con)
                    .await?;
                raw.iter().map(parse_view).collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let views = self.answers(outcomes, "masters")?;
        Ok(merge(views.into_iter().flat_map(|(_, v)| v).collect()))
    }

    /// The names each reachable sentinel monitors, sorted, per port (to find sentinels that
    /// miss a monitor, e.g. one that was down when an instance was created, and monitors left
    /// over). Errors only when no sentinel answers.
    pub async fn monitored_by_each(&self) -> Result<Vec<(u16, Vec<String>)>, EngineError> {
        let outcomes = self
            .on_each(|mut con| async move {
                let raw: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                    .arg("MASTERS")
                    .query_async(&mut con)
                    .await?;
                let mut names = raw
                    .into_iter()
                    .filter_map(|mut m| m.remove("name"))
                    .collect::<Vec<_>>();
                names.sort();
                Ok(names)
            })
            .await?;
        self.answers(outcomes, "monitored_by_each")
    }

    /// The names some reachable sentinel monitors with other settings than this set's
    /// (quorum, `down-after-milliseconds`, `failover-timeout`, `parallel-syncs`): monitors
    /// registered by an earlier release or under an earlier config, which Sentinel keeps as
    /// they were set. [`SentinelSet::monitor`] gives them this set's settings. Sorted. Errors
    /// only when no sentinel answers.
    pub async fn monitored_otherwise(&self) -> Result<Vec<String>, EngineError> {
        let cfg = &self.inner.cfg;
        let want = Arc::new([
            ("quorum", cfg.quorum.to_string()),
            ("down-after-milliseconds", cfg.down_after_ms.to_string()),
            ("failover-timeout", cfg.failover_timeout_ms.to_string()),
            ("parallel-syncs", "1".to_string()),
        ]);
        let outcomes = self
            .on_each(move |mut con| {
                let want = want.clone();
                async move {
                    let raw: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                        .arg("MASTERS")
                        .query_async(&mut con)
                        .await?;
                    Ok(raw
                        .into_iter()
                        .filter(|m| want.iter().any(|(k, v)| m.get(*k) != Some(v)))
                        .filter_map(|mut m| m.remove("name"))
                        .collect::<Vec<_>>())
                }
            })
            .await?;
        let mut names: Vec<String> = self
            .answers(outcomes, "monitored_otherwise")?
            .into_iter()
            .flat_map(|(_, names)| names)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Whether the sentinels could fail `name` over now: at least `quorum` of them see a
    /// replica that is up (no `s_down`, `o_down` or `disconnected` flag, priority not 0) and know another
    /// sentinel for it. Right after a failover they may not (they learn the new master's
    /// replicas from its `INFO`, every 10 s), nor in the first seconds after `monitor` (they
    /// find each other through the master's hello messages, every 2 s).
    pub async fn can_fail_over(&self, name: &str) -> Result<bool, EngineError> {
        check_name(name)?;
        let name = name.to_string();
        let outcomes = self
            .on_each(move |mut con| {
                let name = name.clone();
                async move {
                    let replicas: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                        .arg("REPLICAS")
                        .arg(&name)
                        .query_async(&mut con)
                        .await?;
                    let others: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
                        .arg("SENTINELS")
                        .arg(&name)
                        .query_async(&mut con)
                        .await?;
                    // Up, and eligible: priority 0 (a replica not yet in sync, see
                    // `replica-priority` in the node's config) is never promoted. The
                    // priority counts only from a recent INFO: right after a replica comes
                    // back, a sentinel still shows the priority it had before (measured: a
                    // switch then refused with NOGOODSLAVE).
                    let up = replicas.iter().any(|r| {
                        let flags = r.get("flags").map(String::as_str).unwrap_or("");
                        let fresh = r
                            .get("info-refresh")
                            .and_then(|ms| ms.parse::<u64>().ok())
                            .is_none_or(|ms| ms < FRESH_INFO_MS);
                        let eligible = fresh && r.get("slave-priority").is_none_or(|p| p != "0");
                        eligible
                            && !flags
                                .split(',')
                                .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
                    });
                    Ok(up && !others.is_empty())
                }
            })
            .await?;
        let ready = self
            .answers(outcomes, "can_fail_over")?
            .into_iter()
            .filter(|(_, ok)| *ok)
            .count();
        Ok(ready as u32 >= self.inner.cfg.quorum)
    }

    /// `SENTINEL FAILOVER` on one reachable sentinel (the first by port that accepts a
    /// connection): a planned switch, which Sentinel starts without asking the others. The
    /// caller pauses writes first (Sentinel alone leaves the old master writable for seconds).
    /// `-INPROG` is returned as is; after `-NOGOODSLAVE` (that sentinel's view lags; it started
    /// nothing) the next sentinel is asked, and the last refusal is returned.
    pub async fn failover(&self, name: &str) -> Result<(), EngineError> {
        check_name(name)?;
        let cfg = &self.inner.cfg;
        let host = connect_host_of(&cfg.bind)?;
        let mut refused = None;
        for &port in &cfg.ports {
            let mut con = match connect(&host, port, &cfg.secret).await {
                Ok(con) => con,
                Err(e) => {
                    tracing::debug!(port, error = %chain(&e), "sentinel unreachable for failover");
                    continue;
                }
            };
            match redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg(name)
                .query_async::<()>(&mut con)
                .await
            {
                Ok(()) => return Ok(()),
                // This sentinel's view of the replicas lags (a replica that just came back
                // still shows its old priority, or its INFO is old): it started nothing, so
                // another may take the switch. Any other refusal (INPROG) stands.
                Err(e) if e.to_string().contains("NOGOODSLAVE") => {
                    tracing::info!(port, "sentinel sees no replica to promote; asking the next");
                    refused = Some(EngineError::Sentinel {
                        port,
                        source: Box::new(e.into()),
                    });
                }
                Err(e) => {
                    return Err(EngineError::Sentinel {
                        port,
                        source: Box::new(e.into()),
                    })
                }
            }
        }
        Err(refused.unwrap_or(EngineError::NoSentinel {
            ports: cfg.ports.clone(),
        }))
    }

    /// Stops every sentinel: SIGTERM, SIGKILL after a grace period (tests, uninstall).
    pub async fn stop_all(&self) -> Result<(), EngineError> {
        let _one_at_a_time = self.inner.lifecycle.lock().await;
        let mut first_err = None;
        for (port, daemon) in &self.inner.sentinels {
            let Some(pid) = daemon.find() else {
                continue;
            };
            match daemon.stop(STOP_GRACE).await {
                Ok(true) => tracing::info!(port, pid, "sentinel stopped"),
                Ok(false) => {
                    first_err.get_or_insert(EngineError::SentinelStillRunning { port: *port, pid });
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Runs `op` on a fresh connection to each sentinel, all at once; outcomes in port order.
    async fn on_each<T, F, Fut>(&self, op: F) -> Result<Vec<(u16, Outcome<T>)>, EngineError>
    where
        T: Send + 'static,
        F: Fn(MultiplexedConnection) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<T, EngineError>> + Send + 'static,
    {
        let cfg = &self.inner.cfg;
        let host = connect_host_of(&cfg.bind)?;
        let mut tasks = JoinSet::new();
        for &port in &cfg.ports {
            let (host, secret, op) = (host.clone(), cfg.secret.clone(), op.clone());
            tasks.spawn(async move {
                let outcome = match connect(&host, port, &secret).await {
                    Ok(con) => match op(con).await {
                        Ok(v) => Outcome::Done(v),
                        Err(e) => Outcome::Failed(e),
                    },
                    Err(EngineError::NotRunning) => Outcome::NotRunning,
                    Err(e) => Outcome::Failed(e),
                };
                (port, outcome)
            });
        }
        let mut out = Vec::with_capacity(cfg.ports.len());
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(pair) => out.push(pair),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => {
                    return Err(EngineError::Io(std::io::Error::other(format!(
                        "sentinel task: {e}"
                    ))))
                }
            }
        }
        out.sort_by_key(|(port, _)| *port);
        Ok(out)
    }

    /// For a change every running sentinel must take: the first failure, or `NoSentinel`
    /// when none runs.
    fn all_running_did(
        &self,
        outcomes: Vec<(u16, Outcome<()>)>,
        what: &str,
    ) -> Result<(), EngineError> {
        let mut done = 0;
        let mut first_err = None;
        for (port, outcome) in outcomes {
            match outcome {
                Outcome::Done(()) => done += 1,
                Outcome::NotRunning => tracing::debug!(port, what, "sentinel not running"),
                Outcome::Failed(e) => {
                    tracing::warn!(port, what, error = %chain(&e), "sentinel failed");
                    first_err.get_or_insert(EngineError::Sentinel {
                        port,
                        source: Box::new(e),
                    });
                }
            }
        }
        match (first_err, done) {
            (Some(e), _) => Err(e),
            (None, 0) => Err(EngineError::NoSentinel {
                ports: self.inner.cfg.ports.clone(),
            }),
            (None, _) => Ok(()),
        }
    }

    /// For a question: the answers of those that answered, `NoSentinel` when none did.
    fn answers<T>(
        &self,
        outcomes: Vec<(u16, Outcome<T>)>,
        what: &str,
    ) -> Result<Vec<(u16, T)>, EngineError> {
        let mut out = Vec::new();
        for (port, outcome) in outcomes {
            match outcome {
                Outcome::Done(v) => out.push((port, v)),
                Outcome::NotRunning => tracing::debug!(port, what, "sentinel not running"),
                Outcome::Failed(e) => {
                    tracing::debug!(port, what, error = %chain(&e), "sentinel did not answer")
                }
            }
        }
        if out.is_empty() {
            return Err(EngineError::NoSentinel {
                ports: self.inner.cfg.ports.clone(),
            });
        }
        Ok(out)
    }
}

/// A connection to the sentinel on `port`, logged in with the set's secret. Refused:
/// [`EngineError::NotRunning`].
/// How crsd logs in to one sentinel: the `default` user with the set's secret.
fn sentinel_client(host: &str, port: u16, secret: &str) -> Result<redis::Client, EngineError> {
    Ok(redis::Client::open(ConnectionInfo {
        addr: ConnectionAddr::Tcp(host.to_string(), port),
        redis: RedisConnectionInfo {
            db: 0,
            username: None,
            password: Some(secret.to_string()),
            ..Default::default()
        },
    })?)
}

async fn connect(
    host: &str,
    port: u16,
    secret: &str,
) -> Result<MultiplexedConnection, EngineError> {
    let client = sentinel_client(host, port, secret)?;
    let conn_config = AsyncConnectionConfig::new()
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    match client
        .get_multiplexed_async_connection_with_config(&conn_config)
        .await
    {
        Ok(con) => Ok(con),
        Err(e) if e.is_connection_refusal() => Err(EngineError::NotRunning),
        Err(e) => Err(e.into()),
    }
}

/// The pid of the process that answers `PING` on `port` with the secret.
async fn answering_pid(host: &str, port: u16, secret: &str) -> Result<u32, EngineError> {
    let mut con = connect(host, port, secret).await?;
    let pong: String = redis::cmd("PING").query_async(&mut con).await?;
    if pong != "PONG" {
        return Err(EngineError::Protocol(format!("PING answered {pong:?}")));
    }
    let info = crate::admin::info(&mut con, "server").await?;
    crate::admin::field(&info, "process_id")
}

async fn monitor_one(
    mut con: MultiplexedConnection,
    m: Arc<Monitored>,
    (quorum, down_after_ms, failover_timeout_ms): (u32, u64, u64),
) -> Result<(), EngineError> {
    let known = redis::cmd("SENTINEL")
        .arg("MASTER")
        .arg(&m.name)
        .query_async::<HashMap<String, String>>(&mut con)
        .await;
    match known {
        Ok(_) => {}
        Err(e) if is_unknown_master(&e) => {
            match redis::cmd("SENTINEL")
                .arg("MONITOR")
                .arg(&m.name)
                .arg(&m.host)
                .arg(m.port)
                .arg(quorum)
                .query_async::<()>(&mut con)
                .await
            {
                Ok(()) => {}
                // Another call registered it in between: the SETs below apply all the same.
                Err(e) if e.to_string().contains("Duplicate master name") => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    }
    // One SET with every option: Sentinel applies them in one go and flushes its config once.
    redis::cmd("SENTINEL")
        .arg("SET")
        .arg(&m.name)
        .arg("auth-user")
        .arg(&m.auth_user)
        .arg("auth-pass")
        .arg(&m.auth_pass)
        .arg("quorum")
        .arg(quorum)
        .arg("down-after-milliseconds")
        .arg(down_after_ms)
        .arg("failover-timeout")
        .arg(failover_timeout_ms)
        .arg("parallel-syncs")
        .arg(1)
        .query_async::<()>(&mut con)
        .await?;
    if let Some(script) = &m.reconfig_script {
        // A sentinel whose config predates `deny-scripts-reconfig no` refuses it: it still
        // fails the master over, only without the script (crsd moves what the script would
        // once it runs).
        let script = script.to_string_lossy();
        if let Err(e) = redis::cmd("SENTINEL")
            .arg("SET")
            .arg(&m.name)
            .arg("client-reconfig-script")
            .arg(script.as_ref())
            .arg("notification-script")
            .arg(script.as_ref())
            .query_async::<()>(&mut con)
            .await
        {
            tracing::warn!(name = %m.name, error = %e,
                "a sentinel refuses the reconfig script; it fails over without it");
        }
    }
    Ok(())
}

/// `SENTINEL <sub> <name>`, where a name the sentinel does not know counts as done.
async fn sentinel_cmd_unless_unknown(
    mut con: MultiplexedConnection,
    sub: &str,
    name: &str,
) -> Result<(), EngineError> {
    match redis::cmd("SENTINEL")
        .arg(sub)
        .arg(name)
        .query_async::<redis::Value>(&mut con)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_unknown_master(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_unknown_master(e: &redis::RedisError) -> bool {
    e.to_string().contains("No such master with that name")
}

/// One entry of `SENTINEL MASTERS` (or `SENTINEL MASTER`).
fn parse_view(fields: &HashMap<String, String>) -> Result<MasterView, EngineError> {
    let get = |key: &str| {
        fields
            .get(key)
            .ok_or_else(|| EngineError::Protocol(format!("SENTINEL MASTERS entry has no {key}")))
    };
    let num = |key: &str| -> Result<u64, EngineError> {
        let raw = get(key)?;
        raw.parse()
            .map_err(|_| EngineError::Protocol(format!("SENTINEL MASTERS {key} {raw:?}")))
    };
    let flags = get("flags")?;
    let has = |flag: &str| flags.split(',').any(|f| f == flag);
    Ok(MasterView {
        name: get("name")?.clone(),
        host: get("ip")?.clone(),
        port: u16::try_from(num("port")?)
            .map_err(|_| EngineError::Protocol("SENTINEL MASTERS port out of range".into()))?,
        config_epoch: num("config-epoch")?,
        down: has("s_down") || has("o_down"),
        num_replicas: u32::try_from(num("num-slaves")?).unwrap_or(u32::MAX),
        failover_in_progress: has("failover_in_progress"),
    })
}

/// Merges the views of all sentinels (in port order) per name; see [`SentinelSet::masters`].
fn merge(views: Vec<MasterView>) -> HashMap<String, MasterView> {
    let mut by_name: HashMap<String, Vec<MasterView>> = HashMap::new();
    for v in views {
        by_name.entry(v.name.clone()).or_default().push(v);
    }
    by_name
        .into_iter()
        .map(|(name, views)| (name, merge_one(&views)))
        .collect()
}

fn merge_one(views: &[MasterView]) -> MasterView {
    let top = views.iter().map(|v| v.config_epoch).max().unwrap_or(0);
    let newest: Vec<&MasterView> = views.iter().filter(|v| v.config_epoch == top).collect();
    // Addresses with how many of the newest views report them, in first-seen order.
    let mut counts: Vec<((&str, u16), usize)> = Vec::new();
    for v in &newest {
        let addr = (v.host.as_str(), v.port);
        match counts.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, n)) => *n += 1,
            None => counts.push((addr, 1)),
        }
    }
    let mut best = counts[0];
    for c in &counts[1..] {
        if c.1 > best.1 {
            best = *c;
        }
    }
    let agreeing: Vec<&&MasterView> = newest
        .iter()
        .filter(|v| (v.host.as_str(), v.port) == best.0)
        .collect();
    let mut out = (*agreeing[0]).clone();
    out.down = agreeing.iter().any(|v| v.down);
    out.num_replicas = agreeing.iter().map(|v| v.num_replicas).max().unwrap_or(0);
    out.failover_in_progress = views.iter().any(|v| v.failover_in_progress);
    out
}

/// sentinel.conf for the first start of the sentinel on `port` (see the module docs).
fn render_conf(cfg: &SentinelConfig, port: u16, dir: &Path) -> Result<String, EngineError> {
    check_secret(&cfg.secret)?;
    let bind = parse_bind(&cfg.bind)?;
    let dir = dir
        .to_str()
        .filter(|d| !d.chars().any(|c| c.is_control() || c == '"' || c == '\\'))
        .ok_or_else(|| {
            EngineError::Config(format!(
                "the sentinel folder {} cannot be written in sentinel.conf",
                dir.display()
            ))
        })?;
    let secret = &cfg.secret;
    Ok(format!(
        "# crsd's Redis Sentinel on port {port}. Written once, at its first start: Sentinel\n\
         # owns this file and rewrites it (monitors, epochs, known replicas and sentinels).\n\
         port {port}\n\
         bind {bind}\n\
         daemonize no\n\
         set-proc-title no\n\
         pidfile \"{dir}/{PID_FILE}\"\n\
         logfile \"{dir}/{LOG_FILE}\"\n\
         dir \"{dir}\"\n\
         sentinel resolve-hostnames no\n\
         # crsd sets each instance's client-reconfig-script at run time (its own file).\n\
         {SCRIPTS_LINE}\n\
         requirepass \"{secret}\"\n\
         sentinel sentinel-pass \"{secret}\"\n"
    ))
}

/// The secret goes into sentinel.conf between quotes: printable ASCII only, no quote or
/// backslash, and not empty (an empty `requirepass` means no password at all).
fn check_secret(secret: &str) -> Result<(), EngineError> {
    let ok = !secret.is_empty()
        && secret
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'\\'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::Config(
            "the sentinel secret must be non-empty printable ASCII without spaces, quotes or \
             backslashes"
                .into(),
        ))
    }
}

/// Monitor names: `[A-Za-z0-9._-]`, so they are one word in sentinel.conf and never a glob
/// pattern (`SENTINEL RESET` takes a pattern).
fn check_name(name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(EngineError::Config(format!(
            "monitor name {name:?} must be 1-128 characters of [A-Za-z0-9._-]"
        )))
    }
}

/// Whether the process `pid` (our child, reaped in the background) is gone or a zombie.
fn has_exited(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_is_zombie_or_gone(&stat),
        Err(_) => true,
    }
}

fn not_started(port: u16, daemon: &Daemon, reason: String) -> EngineError {
    EngineError::SentinelNotStarted {
        port,
        reason,
        log_tail: file_tail(&daemon.log),
    }
}

/// An error with its sources, for log lines and messages.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(host: &str, port: u16, epoch: u64) -> MasterView {
        MasterView {
            name: "crs-a".into(),
            host: host.into(),
            port,
            config_epoch: epoch,
            down: false,
            num_replicas: 1,
            failover_in_progress: false,
        }
    }

    #[test]
    fn the_newest_epoch_wins_then_the_address_most_report() {
        let mut stale = view("127.0.0.1", 7001, 0);
        stale.down = true;
        let mut leader = view("127.0.0.1", 7002, 1);
        leader.num_replicas = 2;
        let merged = merge(vec![stale.clone(), leader.clone(), stale.clone()]);
        assert_eq!(merged["crs-a"].port, 7002);
        assert!(
            !merged["crs-a"].down,
            "only the stale views flagged the old address"
        );
        assert_eq!(merged["crs-a"].num_replicas, 2);

        let mut busy = view("127.0.0.1", 7003, 1);
        busy.failover_in_progress = true;
        let merged = merge(vec![leader.clone(), busy.clone(), busy.clone()]);
        assert_eq!(merged["crs-a"].port, 7003, "two of three report 7003");
        assert!(merged["crs-a"].failover_in_progress);

        let merged = merge(vec![busy, leader]);
        assert_eq!(
            merged["crs-a"].port, 7003,
            "a tie goes to the lowest sentinel port"
        );
    }

    #[test]
    fn a_masters_entry_is_read_with_its_flags() {
        let fields: HashMap<String, String> = [
            ("name", "crs-a"),
            ("ip", "127.0.0.1"),
            ("port", "7001"),
            ("flags", "master,s_down,o_down,failover_in_progress"),
            ("config-epoch", "3"),
            ("num-slaves", "2"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let v = parse_view(&fields).expect("view");
        assert_eq!(v.port, 7001);
        assert_eq!(v.config_epoch, 3);
        assert!(v.down && v.failover_in_progress);
        assert_eq!(v.num_replicas, 2);

        let mut up = fields.clone();
        up.insert("flags".into(), "master,disconnected".into());
        assert!(!parse_view(&up).expect("view").down);
        up.remove("config-epoch");
        assert!(parse_view(&up).is_err());
    }

    #[test]
    fn the_first_config_is_private_material_and_refuses_what_it_cannot_quote() {
        let cfg = SentinelConfig {
            secret: "s3cret".into(),
            ..SentinelConfig::default()
        };
        let text = render_conf(&cfg, 26379, Path::new("/x/26379")).expect("render");
        for line in [
            "port 26379",
            "bind 127.0.0.1",
            "set-proc-title no",
            "requirepass \"s3cret\"",
            "sentinel sentinel-pass \"s3cret\"",
            "pidfile \"/x/26379/sentinel.pid\"",
            "sentinel resolve-hostnames no",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        for bad in ["", "with space", "quo\"te", "back\\slash", "new\nline"] {
            let cfg = SentinelConfig {
                secret: bad.into(),
                ..SentinelConfig::default()
            };
            assert!(render_conf(&cfg, 1, Path::new("/x")).is_err(), "{bad:?}");
        }
        assert!(
            format!("{cfg:?}").contains("<redacted>") && !format!("{cfg:?}").contains("s3cret")
        );
    }

    #[test]
    fn a_set_can_be_shared_between_tasks() {
        fn shared<T: Send + Sync + Clone + 'static>() {}
        shared::<SentinelSet>();
    }

    #[test]
    fn monitor_names_are_words_not_patterns() {
        assert!(check_name("crs-abc_1.2").is_ok());
        for bad in ["", "a b", "crs-*", "crs-[ab]", "a?"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}

/// A replica a sentinel is promoting right now (its `+failover-state-wait-promotion`, sent
/// right after `REPLICAOF NO ONE`, about 0.8 s before `+switch-master`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The monitored master's name.
    pub name: String,
    /// The replica being promoted.
    pub host: String,
    pub port: u16,
}

impl SentinelSet {
    /// Sends every promotion any sentinel announces on `tx`, until `tx` is closed. A sentinel
    /// that does not answer is subscribed to again a second later.
    pub async fn follow_promotions(&self, tx: tokio::sync::mpsc::Sender<Promotion>) {
        let cfg = &self.inner.cfg;
        let Ok(host) = connect_host_of(&cfg.bind) else {
            return;
        };
        let mut tasks = JoinSet::new();
        for &port in &cfg.ports {
            tasks.spawn(follow_one(
                host.clone(),
                port,
                cfg.secret.clone(),
                tx.clone(),
            ));
        }
        while tasks.join_next().await.is_some() {}
    }
}

async fn follow_one(
    host: String,
    port: u16,
    secret: String,
    tx: tokio::sync::mpsc::Sender<Promotion>,
) {
    use futures_util::StreamExt;
    while !tx.is_closed() {
        let subscribed = async {
            let client = sentinel_client(&host, port, &secret)?;
            let mut pubsub = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub())
                .await
                .map_err(|_| EngineError::Protocol("no answer to a subscription".into()))??;
            pubsub.subscribe(PROMOTION_EVENT).await?;
            Ok::<_, EngineError>(pubsub)
        }
        .await;
        if let Ok(pubsub) = subscribed {
            let mut messages = pubsub.into_on_message();
            while let Some(msg) = messages.next().await {
                let payload: String = msg.get_payload().unwrap_or_default();
                if let Some(p) = parse_promotion(&payload) {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Sentinel's event right after it sent `REPLICAOF NO ONE` to the replica it promotes.
const PROMOTION_EVENT: &str = "+failover-state-wait-promotion";

/// `slave <ip>:<port> <ip> <port> @ <master-name> <master-ip> <master-port>`.
fn parse_promotion(payload: &str) -> Option<Promotion> {
    let parts: Vec<&str> = payload.split_whitespace().collect();
    match parts.as_slice() {
        [_kind, _addr, ip, port, "@", name, _mip, _mport] => Some(Promotion {
            name: name.to_string(),
            host: ip.to_string(),
            port: port.parse().ok()?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod promotion_tests {
    use super::*;

    #[test]
    fn reads_sentinels_promotion_event() {
        assert_eq!(
            parse_promotion("slave 127.0.1.3:6379 127.0.1.3 6379 @ crs-abc 127.0.1.2 6379"),
            Some(Promotion {
                name: "crs-abc".into(),
                host: "127.0.1.3".into(),
                port: 6379
            })
        );
        assert_eq!(parse_promotion("slave 1.2.3.4:5 1.2.3.4 x @ n 1 2"), None);
        assert_eq!(parse_promotion(""), None);
    }
}
