//! `crsd-engine` drives real `redis-server` processes for crsd.
//!
//! # What this crate owns
//!
//! * **Processes**: starting `redis-server` detached from crsd (its own process group, so killing
//!   crsd never kills a customer's database), adopting processes that survived a crsd restart,
//!   liveness checks, and stopping (graceful `SHUTDOWN`, then `SIGTERM`, then `SIGKILL`).
//!   A process is only ever signalled after `/proc/<pid>/cmdline` proved it is the
//!   `redis-server` of that very node, and through a pidfd, so a recycled pid is never hit.
//! * **Ceilings**: each redis-server runs in a cgroup of its own with a memory limit of
//!   `maxmemory` plus a headroom and a CPU bound (`ceiling.rs`), so what `maxmemory` does not
//!   count (Lua's heap, a fork's copy-on-write) cannot take the host; kills by that limit are
//!   counted.
//! * **Sentinels**: crsd's set of Redis Sentinel processes (`sentinel.rs`), which decide
//!   failovers: started detached and adopted like the nodes, masters registered with and
//!   removed from every sentinel, and their merged view of who is master now.
//! * **Config files**: rendering each node's `redis.conf` (bind, port, durability, memory
//!   limit, inline ACL users, replication) and the node folder's permissions.
//! * **Redis connections for admin commands**: live changes (`CONFIG SET`, `ACL SETUSER`,
//!   persisted with `CONFIG REWRITE`), `FLUSHALL`, `INFO` queries and replication checks,
//!   always authenticated as crsd's own ACL user; the workload reads the monitoring actions
//!   show (command counters, clients, bounded key walks: `workload.rs`).
//! * **The host's proxy**: the one HAProxy process that gives every instance its stable
//!   address and sends clients to whichever node answers `role:master` (`proxy.rs`): its
//!   config, start, reloads that keep established connections, and its runtime commands for
//!   planned switches.
//! * **Backup and restore primitives**: a replication barrier, a point-in-time RDB of a
//!   node (`BGSAVE` on the replica), checking an RDB file, and staging an RDB as a node's
//!   data with a way back (see `snapshot.rs` and `restore.rs`). Where backups are kept and
//!   when they are taken is the caller's business.
//!
//! # What it must not touch
//!
//! No database, no HTTP, no business rules (who may create what, quotas, naming, port
//! allocation, secret generation). Callers hand in a complete [`NodeSpec`]; this crate only
//! validates that the spec can be rendered safely into a `redis.conf`.
//!
//! # Files of a node (all inside [`NodeSpec::dir`])
//!
//! `redis.conf` (0600), `redis.pid`, `redis.log`, `appendonlydir/` (the AOF, the source of
//! truth after a crash) and `dump.rdb` (only when a snapshot was requested or a replica did a
//! full sync). During a restore also `appendonlydir.restore/`, `appendonlydir.before-restore/`
//! and, after a crash, `appendonlydir.restore-partial/` or `*.trash/`. The folder itself
//! is 0700.
//!
//! # redis.conf: rendered from the spec, then owned by redis-server
//!
//! `start` renders redis.conf from the [`NodeSpec`] right before it spawns redis-server; while
//! the node runs, redis-server owns the file and `CONFIG REWRITE` persists live changes
//! (`set_maxmemory`, `set_default_password`) in it. The first line records a hash of what the
//! spec rendered to: if the next `start` gets the same spec, the file on disk is kept as is,
//! live changes included; if the spec changed, the file is rendered again and the spec wins.
//! So callers may update their stored spec after a live change (recommended) or not at all.
//!
//! # Durability in one paragraph
//!
//! Every node runs with `appendonly yes` / `appendfsync everysec`: redis-server writes the AOF
//! buffer to the file before it replies to a client, so a `kill -9` of the process loses no
//! acknowledged write (only an OS crash or power loss can lose the last second). One caveat of
//! redis itself: while its once-a-second background fsync is still running, it postpones the
//! write (up to 2 s) but still replies, so on a disk too slow to fsync quickly a `kill -9` in
//! that window can lose those replies' writes; `appendfsync always` would close it. This matters
//! beyond the master itself: a master that restarts *empty* at the same address makes its
//! replica resync and wipe itself too. `start` therefore always brings a node back from its
//! own AOF, and readiness means `PING` answers `PONG`, which redis only does once the dataset
//! is fully loaded.

mod address;
mod admin;
mod ceiling;
mod cluster;
mod config;
mod daemon;
mod durable;
mod engine;
mod error;
mod exporter;
mod layout;
mod persistence;
mod poll;
mod process;
mod proxy;
mod reshard;
mod restore;
mod runtime;
mod sentinel;
mod slowlog;
mod snapshot;
mod stats;
mod switch;
mod warm;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use address::Lineage;
pub use ceiling::{CeilingConfig, CeilingStatus};
pub use cluster::{even_slots, ClusterNodeView, ClusterShard, ClusterView, SLOTS};
pub use config::CLUSTER_BUS_OFFSET;
pub use engine::{Engine, Liveness};
pub use error::EngineError;
pub use exporter::{Exporter, ExporterConfig, ExporterTarget};
pub use persistence::NodeUsage;
pub use proxy::{Frontend, Proxy, ProxyConfig, Server};
pub use reshard::{SlotMoves, SlotOwner};
pub use runtime::NodeRuntime;
pub use sentinel::{
    MasterView, Monitored, Promotion, SentinelConfig, SentinelSet, SentinelTimers,
    MIN_SAFE_DOWN_AFTER_MS,
};
pub use slowlog::SlowlogEntry;
pub use stats::NodeStats;
pub use workload::{
    ClientConn, CommandCounter, CommandCounters, KeyFreq, KeySize, KeySizes, KeyWalk,
};

/// Settings shared by every node this engine drives.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The `redis-server` executable. When the [`Engine`] is created, a bare name is looked
    /// up in `PATH` and a relative path is taken from the current folder.
    pub redis_server: PathBuf,
    /// The ONLY address instances listen on (one IP address, e.g. `127.0.0.1`). crsd's own
    /// admin connections use it too (an unspecified address such as `0.0.0.0` is reached
    /// through loopback).
    pub bind: String,
    /// How long `start` waits for a new redis-server to answer `PING` (which includes loading
    /// its AOF) before it kills it and reports [`EngineError::TimedOut`].
    pub start_timeout: Duration,
    /// The kernel memory and CPU ceiling of every node (see `ceiling.rs`); `None`: nodes run
    /// without one. Where the host offers no usable cgroup the engine warns once at creation
    /// and runs without.
    pub ceiling: Option<CeilingConfig>,
    /// The folder under which every node has its own: `<root>/<instance>/<node>`. The engine
    /// alone builds these paths (see `layout.rs`).
    pub root: PathBuf,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            redis_server: PathBuf::from("redis-server"),
            bind: "127.0.0.1".to_string(),
            start_timeout: Duration::from_secs(10),
            ceiling: None,
            root: PathBuf::from("instances"),
        }
    }
}

/// Replication role of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Master,
    Replica,
}

/// Everything needed to render a node's redis.conf and to talk to it.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// The node's id, e.g. "crs-abcd1234-0": names its folder, its cgroup and its log lines.
    pub name: String,
    /// The folder that holds the node's (`<root>/<instance>/<name>`, see
    /// [`EngineConfig::root`]): its instance's id, or the warm pool's folder for a node
    /// started before its instance existed (its process's paths cannot move).
    pub instance: String,
    pub role: Role,
    /// The address the node listens on; empty: the engine's [`EngineConfig::bind`]. With an
    /// address pool every node has one of its own, and all nodes of an instance share the
    /// port the client asked for; the node then also announces this address to its master and
    /// replicates from it (`replica-announce-ip`, `bind-source-addr`), so Sentinel and the
    /// master tell the nodes apart by address.
    pub host: String,
    pub port: u16,
    /// `maxmemory`; must be at least 1 (redis reads 0 as "no limit").
    pub maxmemory_mb: u64,
    /// Hex sha256 of the user's password (see [`acl_sha256_hex`]):
    /// `user default on #<hex> ~* &* +@all`. Empty: the default user needs no password
    /// (`nopass`), for operators who allow password-less instances.
    pub default_password_sha256: String,
    /// crsd's own ACL user (all permissions), e.g. "crsd".
    pub admin_user: String,
    /// Generated by the caller. Only its sha256 is written to redis.conf.
    pub admin_secret: String,
    /// The user replicas authenticate as (`+psync +replconf +ping` only), e.g. "crsd-repl".
    pub repl_user: String,
    /// Generated by the caller. On a replica it is written in plaintext as `masterauth`
    /// (redis needs it to log in to its master); redis.conf is 0600 for that reason.
    pub repl_secret: String,
    /// `Some((host, port))` of the master for [`Role::Replica`], `None` for a master.
    pub master: Option<(String, u16)>,
    /// Further redis parameters the caller allows its users to set (name, value), written
    /// after crsd's own settings so they take precedence. Names must be lower-case
    /// `[a-z0-9-]`; values must not hold control characters.
    pub params: Vec<(String, String)>,
    /// `Some` for a node of a Redis Cluster (`cluster-enabled yes`, see `cluster.rs`): its
    /// role is the cluster's (`CLUSTER REPLICATE`, the cluster's own failovers), so `master`
    /// is `None` and no `replicaof` is written; its identity and its view of the cluster
    /// live in `nodes.conf` in its folder, kept across restarts and restores.
    pub cluster: Option<ClusterSettings>,
}

/// How a cluster node takes part in its cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `cluster-node-timeout`: how long a node may not answer before the others take it
    /// for failed and promote its replica.
    pub node_timeout_ms: u64,
}

/// A running redis-server of a node.
#[derive(Clone, Debug)]
pub struct NodeHandle {
    pub pid: u32,
    /// `run_id` from `INFO server`; changes on every restart of redis-server.
    pub run_id: String,
}

/// The ACL user Redis Sentinel logs in as on every node of an instance it watches: only the
/// commands Sentinel sends (the set the Redis ACL docs list for Sentinel), never the
/// customer's password, so a password reset never touches failover.
pub const SENTINEL_USER: &str = "crsd-sentinel";
/// The ACL user the proxy's health check logs in as: `PING` and `INFO replication` only.
pub const CHECK_USER: &str = "crsd-check";
/// The ACL user the redis exporter logs in as (see `exporter.rs`): `INFO` and a few other
/// read-only commands, no key.
pub const EXPORTER_USER: &str = "crsd-exporter";

/// The secret of one of crsd's internal users of an instance ([`SENTINEL_USER`],
/// [`CHECK_USER`], [`EXPORTER_USER`]), derived from the instance's admin secret: HMAC-SHA256
/// keyed by it over the user's name, hex. One stored secret per instance stays the only
/// secret; the derived ones are written where their clients need them in plaintext
/// (sentinel.conf, haproxy.cfg, the exporter's password file, all 0600), and none of them
/// leads back to the admin secret.
pub fn internal_secret(admin_secret: &str, user: &str) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(admin_secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(user.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// sha256 hex of a password, the form redis ACL `#<hex>` takes (lowercase).
pub fn acl_sha256_hex(password: &str) -> String {
    hex::encode(Sha256::digest(password.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_secrets_differ_per_user_and_per_instance() {
        let a = internal_secret("admin-a", SENTINEL_USER);
        assert_eq!(a.len(), 64);
        assert_eq!(a, internal_secret("admin-a", SENTINEL_USER));
        assert_ne!(a, internal_secret("admin-a", CHECK_USER));
        assert_ne!(a, internal_secret("admin-b", SENTINEL_USER));
    }

    #[test]
    fn acl_hash_is_lowercase_sha256_hex() {
        // echo -n pw | sha256sum
        assert_eq!(
            acl_sha256_hex("pw"),
            "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"
        );
    }
}
