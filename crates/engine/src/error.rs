//! The one error type of the engine.
//!
//! Start failures are typed (`Exited`, `Signalled`, `TimedOut`) and carry the tail of
//! `redis.log`, because the reason a redis-server refuses to start (port taken, bad config,
//! corrupt AOF) is only ever written there; callers can show it to an operator as is.
//!
//! Wrapped errors (`Io`, `Redis`) follow the usual convention: their Display says what
//! failed, the detail is the `source()`; walk the chain to print everything.

use std::fmt::Display;
use std::time::Duration;

use crate::Role;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The new redis-server exited before it answered PING.
    #[error("redis-server exited with code {code} before it was ready; redis.log ends with:\n{log_tail}")]
    Exited { code: i32, log_tail: String },
    /// The new redis-server was killed by a signal before it answered PING.
    #[error("redis-server was killed by signal {signal} before it was ready; redis.log ends with:\n{log_tail}")]
    Signalled { signal: i32, log_tail: String },
    /// The new redis-server did not answer PING within `start_timeout`; it has been killed.
    #[error("redis-server did not answer PING within {after:?} and was killed; redis.log ends with:\n{log_tail}")]
    TimedOut { after: Duration, log_tail: String },
    /// `start` found this node's redis-server already running (not started by this call), but
    /// it did not answer PING within `start_timeout` (still loading, hung, or it does not
    /// accept the admin credentials of the spec). It is left running; `stop` it to restart.
    #[error("the running redis-server (pid {pid}) of this node did not answer PING within {after:?}; left running")]
    NotReady { pid: u32, after: Duration },
    /// `stop` could not end the process, even with SIGKILL (e.g. stuck in uninterruptible I/O).
    #[error("redis-server (pid {pid}) is still running after SHUTDOWN, SIGTERM and SIGKILL")]
    StillRunning { pid: u32 },
    /// The call needs the node stopped (it replaces files redis-server has open), but its
    /// redis-server runs.
    #[error("redis-server (pid {pid}) of this node is running; stop it first")]
    NodeRunning { pid: u32 },
    /// `wait_replicas`, `wait_replica_synced` or `replication_barrier` ran out of time.
    #[error("after {after:?} only {caught_up} of the {wanted} wanted replicas are connected and caught up")]
    ReplicasNotInSync {
        wanted: usize,
        caught_up: usize,
        after: Duration,
    },
    /// The background save of `snapshot` ended with an error (fork failed, disk full, ...).
    #[error("redis-server could not write its snapshot; redis.log ends with:\n{log_tail}")]
    SnapshotFailed { log_tail: String },
    /// `snapshot` gave up waiting. The save it asked for may still run (or start later, if
    /// it was scheduled behind an AOF rewrite) and then replace dump.rdb.
    #[error("the snapshot did not finish within {after:?}")]
    SnapshotTimedOut { after: Duration },
    /// The file is not a complete, readable RDB (`check_rdb`, `stage_restore`).
    #[error("not a valid RDB file: {detail}")]
    CorruptRdb { detail: String },
    /// `swap_in_restore` found neither a staged restore nor one already swapped in.
    #[error("no restore is staged for this node")]
    NoRestoreStaged,
    /// A replica-only (or master-only) call was made on a node in the other role.
    #[error("expected a {expected:?} but redis reports role:{actual}")]
    WrongRole { expected: Role, actual: String },
    /// redis answered something this crate cannot read (e.g. a missing INFO field).
    #[error("unexpected reply from redis-server: {0}")]
    Protocol(String),
    /// The spec (or engine config) cannot be rendered safely.
    #[error("invalid node configuration: {0}")]
    Config(String),
    /// Nothing listens on the node's port (connection refused).
    #[error("redis-server is not running")]
    NotRunning,
    /// HAProxy did not start, refused a new config (the previous one keeps serving), or could
    /// not be stopped; `what` says which and why as far as crsd knows.
    #[error("haproxy: {what}; haproxy.log ends with:\n{log_tail}")]
    Proxy { what: String, log_tail: String },
    /// HAProxy's runtime API refused a command (unknown frontend or server, ...).
    #[error("haproxy refused `{command}`: {reply}")]
    ProxyCommand { command: String, reply: String },
    /// File or process I/O; the source's message names the path or action.
    #[error("i/o error")]
    Io(#[source] std::io::Error),
    /// Talking to redis-server failed (auth, timeout, error reply, dropped connection).
    #[error("redis-server command failed")]
    Redis(#[from] redis::RedisError),
    /// A sentinel `SentinelSet::ensure_running` started exited, or did not answer `PING` with
    /// the set's secret in time (then it has been killed).
    #[error(
        "the sentinel on port {port} did not start: {reason}; sentinel.log ends with:\n{log_tail}"
    )]
    SentinelNotStarted {
        port: u16,
        reason: String,
        log_tail: String,
    },
    /// `SentinelSet::stop_all` could not end a sentinel, even with SIGKILL.
    #[error("the sentinel on port {port} (pid {pid}) is still running after SIGTERM and SIGKILL")]
    SentinelStillRunning { port: u16, pid: u32 },
    /// No sentinel of the set could be reached (none runs, or none accepts the secret).
    #[error("no sentinel answers (ports {ports:?})")]
    NoSentinel { ports: Vec<u16> },
    /// A reachable sentinel refused or failed a command (the source says how).
    #[error("the sentinel on port {port} failed")]
    Sentinel {
        port: u16,
        #[source]
        source: Box<EngineError>,
    },
    /// The redis exporter exited or did not accept connections in time after it was started
    /// (then it has been killed).
    #[error("the redis exporter did not start: {reason}; its log ends with:\n{log_tail}")]
    ExporterNotStarted { reason: String, log_tail: String },
    /// `settle_restored`: the node's AOF was not on (its first rewrite not finished) in time.
    #[error("the AOF was not on within {after:?}; redis.log ends with:\n{log_tail}")]
    AofNotOn { after: Duration, log_tail: String },
}

impl EngineError {
    /// Whether a sentinel refused a failover for want of a replica it may promote
    /// (`NOGOODSLAVE`): it started nothing, and its view of the replicas may just lag.
    pub fn is_no_replica_to_promote(&self) -> bool {
        match self {
            EngineError::Sentinel { source, .. } => source.to_string().contains("NOGOODSLAVE"),
            _ => false,
        }
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Io(e)
    }
}

/// `map_err` helper that keeps the io error kind and prefixes what was being done.
pub(crate) fn io_err(context: impl Display) -> impl FnOnce(std::io::Error) -> EngineError {
    move |e| EngineError::Io(std::io::Error::new(e.kind(), format!("{context}: {e}")))
}
