//! Renders a node's `redis.conf` and installs it in the node folder.
//!
//! # Who owns the file
//!
//! The engine writes `redis.conf` only in `start`, right before it spawns redis-server.
//! While the node runs, redis-server owns it: live changes (`maxmemory`, the default user's
//! password) are persisted by `CONFIG REWRITE`, which rewrites the file in place.
//!
//! To let those live changes survive a restart without making the caller's spec useless, the
//! first line of the file records the sha256 of what was rendered from the spec:
//!
//! * same spec as last time  -> the file on disk is kept as is (including everything
//!   `CONFIG REWRITE` persisted since);
//! * spec changed (or no file, or no marker) -> the file is rendered again from the spec.
//!
//! So the spec wins whenever the caller changes it, and otherwise the live state wins.
//! `CONFIG REWRITE` keeps comment lines, so the marker survives it.
//!
//! # Safety of the rendering
//!
//! Every value comes from the spec or the engine config and is validated so it cannot break
//! out of its line (no control characters, IP addresses parsed, user names restricted);
//! strings that redis reads as paths or secrets are double-quoted. No plaintext password
//! is written except `masterauth` on replicas (redis has to log in to its master with it);
//! the file is created 0600 in a 0700 folder.

use std::fmt::Write as _;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::durable;
use crate::error::io_err;
use crate::layout::{NodePaths, AOF_DIR, AOF_FILE, RDB_FILE};
use crate::{acl_sha256_hex, EngineConfig, EngineError, NodeSpec, Role};

/// First line of every rendered file, followed by the sha256 of the rendered body.
pub(crate) const MARKER_PREFIX: &str = "# crsd-engine rendered sha256:";

/// ACL rules of the customer's `default` user: every command on all keys and channels except
/// the `@admin` category and the commands that make the server open connections or act
/// beyond the tenant's own data. Written as redis itself normalises them (`ACL GETUSER`), so
/// a running node can be compared with them (see [`DEFAULT_USER_COMMANDS`]): `-@dangerous`
/// with exceptions would read better, but redis stores the resulting single commands.
///
/// * `@admin` (CONFIG, SHUTDOWN, REPLICAOF/SLAVEOF, DEBUG, MODULE, MONITOR, ACL, CLIENT
///   LIST/KILL/NO-EVICT/PAUSE, BGSAVE, FAILOVER, CLUSTER ...): with them a customer could
///   `CONFIG SET maxmemory 0` (escape the size they pay for), `SHUTDOWN`, point the node at
///   another master, `ACL SETUSER crsd off` (lock crsd out), watch crsd's own traffic
///   (`MONITOR`) or exempt a connection from client eviction, as managed Redis services forbid
///   too.
/// * `MIGRATE` connects from the server to any host:port and sends `AUTH`/`RESTORE` there: a
///   tenant could probe whatever the host reaches. `RESTORE-ASKING` is the cluster-only twin
///   of `RESTORE`.
///
/// The other `@dangerous` commands stay allowed because they act on the tenant's own data and
/// users of a cloud Redis expect them: FLUSHALL, FLUSHDB, KEYS, INFO, SORT, SWAPDB, RESTORE
/// (payloads are checked, see `sanitize-dump-payload` below).
pub(crate) const DEFAULT_USER_RULES: &str = "~* &* +@all -@admin -migrate -restore-asking";
/// The command part of [`DEFAULT_USER_RULES`], as `ACL GETUSER default` reports it (single
/// commands in any order).
pub(crate) const DEFAULT_USER_COMMANDS: &str = "+@all -@admin -migrate -restore-asking";
/// The share of `maxmemory` all client connections together may hold (query and output
/// buffers). Client buffers count toward `maxmemory`: without a cap, one client that sends
/// many `GET`s of a large value and never reads the replies made every write fail with OOM
/// under `noeviction`, and wiped the whole data set under `allkeys-lru`. Past the cap redis
/// disconnects the biggest clients first. A percentage follows a resize by itself.
pub(crate) const MAXMEMORY_CLIENTS: &str = "20%";
/// crsd's own user: everything.
const ADMIN_USER_RULES: &str = "~* &* +@all";
/// What a replica needs to replicate from its master, nothing more (as documented by redis).
const REPL_USER_RULES: &str = "+psync +replconf +ping";

/// What Redis Sentinel sends to the nodes it watches and fails over, as the Redis ACL docs
/// list it for Sentinel (measured here over about 100 failovers with an empty `ACL LOG`).
pub(crate) const SENTINEL_USER_RULES: &str = "allchannels -@all +multi +slaveof +ping +exec +subscribe +config|rewrite +role +publish +info +client|setname +client|kill +script|kill";
/// What the proxy's health check sends: `PING`, `INFO replication` (`QUIT` needs no right).
pub(crate) const CHECK_USER_RULES: &str = "resetchannels -@all +ping +info|replication";

/// What the redis exporter sends on a scrape (1.45: `CLIENT SETNAME`, `INFO ALL`, `LATENCY
/// LATEST`, `SLOWLOG LEN`/`GET`, `CLUSTER INFO` on a cluster node), and no key. `CONFIG GET *`
/// is refused on purpose (it would show `masterauth`); the exporter then reads `maxmemory`
/// from INFO and logs the refusal at debug level only.
pub(crate) const EXPORTER_USER_RULES: &str = "resetchannels -@all +ping +info +client|setname +latency|latest +slowlog|len +slowlog|get +cluster|info";

/// The internal users of every node beyond crsd's own and replication's: (name, rules).
pub(crate) fn internal_users() -> [(&'static str, &'static str); 3] {
    [
        (crate::SENTINEL_USER, SENTINEL_USER_RULES),
        (crate::CHECK_USER, CHECK_USER_RULES),
        (crate::EXPORTER_USER, EXPORTER_USER_RULES),
    ]
}

/// What `install` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Installed {
    /// The file was (re)written from the spec.
    Written,
    /// The file already held this spec's rendering (possibly with live changes since).
    Kept,
}

/// How a node starts: on its AOF as always, or once on a restored RDB (see
/// `Engine::start_restored`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Boot {
    /// `appendonly yes`: the node loads its AOF folder.
    Aof,
    /// `appendonly no` and the customer's user without write commands: the node loads
    /// dump.rdb, the restored RDB, and with it the replication id and offset the RDB
    /// carries, so replicas that loaded the same file continue from it (PSYNC) instead of
    /// copying the whole data set. Nothing may be written before the AOF is turned on
    /// (`Engine::settle_restored`): a kill -9 then restarts the node on its AOF folder,
    /// which holds the same RDB as its base. Its own marker: the next start on the AOF
    /// renders the file again.
    RestoredRdb,
}

/// Where a cluster node keeps its identity and its view of the cluster (in its folder).
pub(crate) const CLUSTER_CONFIG_FILE: &str = "nodes.conf";
/// The cluster bus listens this far above the node's port (Redis' own convention).
pub const CLUSTER_BUS_OFFSET: u16 = 10000;

/// The cluster bus port of a node at `port`.
pub(crate) fn cluster_bus_port(port: u16) -> Result<u16, EngineError> {
    port.checked_add(CLUSTER_BUS_OFFSET).ok_or_else(|| {
        EngineError::Config(format!(
            "a cluster node's port must be at most {}, got {port} (its bus listens {CLUSTER_BUS_OFFSET} above)",
            u16::MAX - CLUSTER_BUS_OFFSET
        ))
    })
}

/// Renders the complete file, marker line included.
#[cfg(test)]
pub(crate) fn render(
    config: &EngineConfig,
    spec: &NodeSpec,
    paths: &NodePaths,
) -> Result<String, EngineError> {
    render_for(config, spec, paths, Boot::Aof)
}

/// [`render`] for a start of the given kind.
pub(crate) fn render_for(
    config: &EngineConfig,
    spec: &NodeSpec,
    paths: &NodePaths,
    boot: Boot,
) -> Result<String, EngineError> {
    let bind = node_bind(config, spec)?;
    if spec.port == 0 {
        return Err(EngineError::Config(format!(
            "{}: port must not be 0",
            spec.name
        )));
    }
    let maxmemory = maxmemory_arg(spec.maxmemory_mb)?;
    let default_pass = default_user_pass(&spec.default_password_sha256)?;
    check_user_name(&spec.admin_user, "admin_user")?;
    check_user_name(&spec.repl_user, "repl_user")?;
    if spec.admin_user == spec.repl_user {
        return Err(EngineError::Config(
            "admin_user and repl_user must be different users".into(),
        ));
    }
    check_secret(&spec.admin_secret, "admin_secret")?;
    check_secret(&spec.repl_secret, "repl_secret")?;
    let dir = path_str(&paths.dir)?;
    let pid = path_str(&paths.pid)?;
    let log = path_str(&paths.log)?;

    let mut b = String::new();
    // Infallible: writing to a String cannot fail.
    let mut line = |s: &str| {
        b.push_str(s);
        b.push('\n');
    };
    line("# Managed by crsd-engine for node");
    line(&format!("# {}", one_line(&spec.name)));
    line("# Rendered when the node starts with a changed spec; otherwise redis-server");
    line("# owns this file and CONFIG REWRITE persists live changes in it.");
    line("");
    line("# --- process and network");
    line(&format!("bind {bind}"));
    line(&format!("port {}", spec.port));
    if !spec.host.is_empty() {
        line("# The node's own address: what its master lists and Sentinel connects to, and");
        line("# where its replication connections come from. The instance's address is added");
        line("# at run time while this node is master, never written here.");
        line(&format!("replica-announce-ip {bind}"));
        line(&format!("bind-source-addr {bind}"));
    }
    line("# crsd detaches redis-server itself (own process group) and supervises it.");
    line("daemonize no");
    line("supervised no");
    line("# Keep argv as \"<redis-server> <this file>\": crsd recognises its processes by it.");
    line("set-proc-title no");
    line(&format!("pidfile {}", quote(pid)));
    line(&format!("logfile {}", quote(log)));
    line("loglevel notice");
    line("always-show-logo no");
    line(&format!("dir {}", quote(dir)));
    line("");
    line("# --- durability");
    line("# redis write()s the AOF buffer before it replies, so a kill -9 of this process");
    line("# loses no acknowledged write; everysec bounds an OS crash to ~1 s. (Exception:");
    line("# while a background fsync is still running redis postpones the write, up to 2 s,");
    line("# and still replies; only a slow disk makes that window matter.)");
    line("# A master must never come back empty: its replica would resync and wipe itself.");
    match boot {
        Boot::Aof => line("appendonly yes"),
        Boot::RestoredRdb => {
            line("# This start loads the restored dump.rdb; crsd turns the AOF on once loaded.");
            line("appendonly no");
        }
    }
    line(&format!("appenddirname {}", quote(AOF_DIR)));
    line(&format!("appendfilename {}", quote(AOF_FILE)));
    line("appendfsync everysec");
    line("aof-use-rdb-preamble yes");
    line("# A kill during a write can cut the last, unacknowledged command: load the rest.");
    line("aof-load-truncated yes");
    line("# No automatic RDB snapshots: the AOF is the durable copy, and backups take");
    line("# snapshots explicitly (BGSAVE on the replica) when they need one.");
    line("save \"\"");
    line(&format!("dbfilename {}", quote(RDB_FILE)));
    line("");
    line("# --- memory");
    line("# A cloud store reports OOM to the writer instead of silently evicting data.");
    line(&format!("maxmemory {maxmemory}"));
    line("maxmemory-policy noeviction");
    line("# Client buffers count toward maxmemory: one slow reader must not fill it (past this");
    line("# share redis disconnects the biggest clients first).");
    line(&format!("maxmemory-clients {MAXMEMORY_CLIENTS}"));
    if !spec.params.is_empty() {
        line("");
        line("# --- parameters the instance's user set (they override the above)");
        for (name, value) in &spec.params {
            check_param(name, value)?;
            line(&format!("{name} {}", quote(value)));
        }
    }
    line("");
    line("# --- replication");
    line("# One replica per master: start a full sync at once instead of waiting for more.");
    line("repl-diskless-sync yes");
    line("repl-diskless-sync-delay 0");
    if let Some(cluster) = &spec.cluster {
        // The cluster decides who follows whom (`CLUSTER REPLICATE`, its failovers): no
        // `replicaof` here; a replica logs in to whichever master it follows as repl.
        if spec.master.is_some() {
            return Err(EngineError::Config(
                "a cluster node takes its master from the cluster, not from its spec".into(),
            ));
        }
        let bus = cluster_bus_port(spec.port)?;
        line("");
        line("# --- Redis Cluster: the cluster decides roles and failovers; the node's");
        line("# identity and its view of the cluster live in nodes.conf (kept across restarts");
        line("# and restores: a node that loses it is a stranger to its cluster).");
        line("cluster-enabled yes");
        line(&format!(
            "cluster-config-file {}",
            quote(CLUSTER_CONFIG_FILE)
        ));
        line(&format!("cluster-node-timeout {}", cluster.node_timeout_ms));
        line(&format!("cluster-port {bus}"));
        line("# What the nodes tell clients (CLUSTER SLOTS, MOVED) and each other.");
        if !bind.is_unspecified() {
            line(&format!("cluster-announce-ip {bind}"));
        }
        line(&format!("cluster-announce-port {}", spec.port));
        line(&format!("cluster-announce-bus-port {bus}"));
        line("# Every slot must be served: a shard without a master refuses rather than");
        line("# answering for part of the key space.");
        line("cluster-require-full-coverage yes");
        line("cluster-allow-replica-migration no");
        line(&format!("masteruser {}", spec.repl_user));
        line(&format!("masterauth {}", quote(&spec.repl_secret)));
        line("replica-read-only yes");
        line("replica-serve-stale-data yes");
    }
    match (spec.role, &spec.master) {
        _ if spec.cluster.is_some() => {}
        (Role::Master, None) => {}
        (Role::Replica, Some((host, port))) => {
            check_host(host)?;
            if *port == 0 {
                return Err(EngineError::Config("master port must not be 0".into()));
            }
            line(&format!("replicaof {} {port}", quote(host)));
            line(&format!("masteruser {}", spec.repl_user));
            line(&format!("masterauth {}", quote(&spec.repl_secret)));
            line("replica-read-only yes");
            line("replica-serve-stale-data yes");
            line("# Never promoted by Sentinel before it has synced with its master: crsd raises");
            line("# this (CONFIG SET, not kept here) once the replica is in sync, and lowers it");
            line("# again whenever it is not.");
            line("replica-priority 0");
        }
        (Role::Master, Some(_)) => {
            return Err(EngineError::Config(
                "a master must not have a master address".into(),
            ))
        }
        (Role::Replica, None) => {
            return Err(EngineError::Config(
                "a replica needs its master address".into(),
            ))
        }
    }
    line("");
    line("# --- access: ACL users (passwords only as sha256)");
    line("# Features no user of this node may turn on at runtime.");
    line("enable-protected-configs no");
    line("enable-debug-command no");
    line("enable-module-command no");
    line("# RESTORE payloads from users are checked in depth before they are loaded.");
    line("sanitize-dump-payload clients");
    let read_only = match boot {
        Boot::Aof => "",
        Boot::RestoredRdb => " -@write",
    };
    line(&format!(
        "user default on {default_pass} {DEFAULT_USER_RULES}{read_only}"
    ));
    line(&format!(
        "user {} on #{} {ADMIN_USER_RULES}",
        spec.admin_user,
        acl_sha256_hex(&spec.admin_secret)
    ));
    line(&format!(
        "user {} on #{} {REPL_USER_RULES}",
        spec.repl_user,
        acl_sha256_hex(&spec.repl_secret)
    ));
    for (user, rules) in internal_users() {
        let secret = crate::internal_secret(&spec.admin_secret, user);
        line(&format!(
            "user {user} on #{} {rules}",
            acl_sha256_hex(&secret)
        ));
    }

    let digest = hex::encode(Sha256::digest(b.as_bytes()));
    let mut out = String::with_capacity(b.len() + 100);
    let _ = writeln!(out, "{MARKER_PREFIX}{digest}");
    out.push_str(&b);
    Ok(out)
}

/// Installs `rendered` as the node's redis.conf unless the file already carries the same
/// marker line (see the module docs). The file ends up 0600 either way.
pub(crate) fn install(paths: &NodePaths, rendered: &str) -> Result<Installed, EngineError> {
    let marker = rendered.lines().next().unwrap_or_default();
    match fs::read_to_string(&paths.conf) {
        Ok(existing) if existing.lines().next() == Some(marker) => {
            // `CONFIG REWRITE` (crsd's, or Sentinel's after a switch) persists the addresses
            // the node listens on at that moment, which may include its instance's while it
            // was master. A node always starts on its own address alone: the instance's is
            // added at run time once it is master again (a stale master must never hold it).
            if let Some(pinned) = pin_bind(&existing, rendered) {
                write_atomically(&paths.conf, pinned.as_bytes())?;
            }
            fs::set_permissions(&paths.conf, fs::Permissions::from_mode(0o600))
                .map_err(io_err(format!("chmod 0600 {}", paths.conf.display())))?;
            return Ok(Installed::Kept);
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("reading {}", paths.conf.display()))(e)),
    }
    write_atomically(&paths.conf, rendered.as_bytes())?;
    Ok(Installed::Written)
}

/// `existing` with its `bind` line(s) replaced by `rendered`'s, when they differ.
fn pin_bind(existing: &str, rendered: &str) -> Option<String> {
    let is_bind = |l: &&str| l.starts_with("bind ");
    let want: Vec<&str> = rendered.lines().filter(is_bind).collect();
    let have: Vec<&str> = existing.lines().filter(is_bind).collect();
    if want == have {
        return None;
    }
    let mut out = String::with_capacity(existing.len());
    let mut placed = false;
    for l in existing.lines() {
        if l.starts_with("bind ") {
            if !placed {
                for w in &want {
                    out.push_str(w);
                    out.push('\n');
                }
                placed = true;
            }
            continue;
        }
        out.push_str(l);
        out.push('\n');
    }
    if !placed {
        for w in &want {
            out.push_str(w);
            out.push('\n');
        }
    }
    Some(out)
}

/// Writes `rendered` as the node's redis.conf whatever the file holds: a start on a restored
/// RDB must run with exactly this rendering, and a file it rendered before may hold the live
/// state `CONFIG REWRITE` persisted since (the AOF on) under the same marker.
pub(crate) fn install_fresh(paths: &NodePaths, rendered: &str) -> Result<Installed, EngineError> {
    write_atomically(&paths.conf, rendered.as_bytes())?;
    Ok(Installed::Written)
}

/// Whether `conf` is a file this crate rendered (used before deleting a node folder).
pub(crate) fn is_rendered_by_us(conf: &Path) -> bool {
    fs::read_to_string(conf)
        .map(|s| s.starts_with(MARKER_PREFIX))
        .unwrap_or(false)
}

/// Writes via a temporary file in the same folder, fsync, rename, fsync of the folder: a
/// crash never leaves a half-written redis.conf (redis-server would refuse to start).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), EngineError> {
    let dir = path
        .parent()
        .ok_or_else(|| EngineError::Config(format!("{} has no folder", path.display())))?;
    let tmp = path.with_extension("conf.crsd-tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(format!("removing {}", tmp.display()))(e)),
    }
    durable::write_new_synced(&tmp, bytes)?;
    durable::rename_synced(dir, &tmp, path)
}

/// The address a node listens on: its own, or the engine's.
pub(crate) fn node_bind(config: &EngineConfig, spec: &NodeSpec) -> Result<IpAddr, EngineError> {
    if spec.host.is_empty() {
        parse_bind(&config.bind)
    } else {
        let ip = parse_bind(&spec.host)?;
        if ip.is_unspecified() {
            return Err(EngineError::Config(format!(
                "{}: a node's own address must be one address, got {ip}",
                spec.name
            )));
        }
        Ok(ip)
    }
}

/// A bind setting (of the nodes or of the sentinels): one IP address.
pub(crate) fn parse_bind(bind: &str) -> Result<IpAddr, EngineError> {
    bind.trim()
        .parse::<IpAddr>()
        .map_err(|_| EngineError::Config(format!("bind must be one IP address, got {bind:?}")))
}

/// The address crsd connects to a node at: its own address, or the engine's bind address
/// (loopback if that is every address).
pub(crate) fn connect_host(config: &EngineConfig, spec: &NodeSpec) -> Result<String, EngineError> {
    if spec.host.is_empty() {
        connect_host_of(&config.bind)
    } else {
        Ok(node_bind(config, spec)?.to_string())
    }
}

/// [`connect_host`] for any bind setting.
pub(crate) fn connect_host_of(bind: &str) -> Result<String, EngineError> {
    let ip = match parse_bind(bind)? {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Ok(ip.to_string())
}

/// `maxmemory` value; 0 is refused because redis reads it as "no limit at all".
pub(crate) fn maxmemory_arg(mb: u64) -> Result<String, EngineError> {
    if mb == 0 {
        return Err(EngineError::Config(
            "maxmemory_mb must be at least 1 (redis reads 0 as unlimited)".into(),
        ));
    }
    if mb.checked_mul(1024 * 1024).is_none() {
        return Err(EngineError::Config(format!(
            "maxmemory_mb {mb} is too large"
        )));
    }
    Ok(format!("{mb}mb"))
}

/// The default user's password rule: `#<hex>`, or `nopass` for an empty hash.
pub(crate) fn default_user_pass(sha256_hex: &str) -> Result<String, EngineError> {
    if sha256_hex.is_empty() {
        Ok("nopass".into())
    } else {
        Ok(format!("#{}", normalize_sha256_hex(sha256_hex)?))
    }
}

/// Lowercase 64-digit hex, the only form redis accepts after `#`.
pub(crate) fn normalize_sha256_hex(s: &str) -> Result<String, EngineError> {
    if s.len() == 64 && s.bytes().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(EngineError::Config(
            "password hash must be 64 hex digits (sha256)".into(),
        ))
    }
}

fn check_user_name(name: &str, what: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
    if !ok {
        return Err(EngineError::Config(format!(
            "{what} must be 1-64 characters of [A-Za-z0-9._-], got {name:?}"
        )));
    }
    if name == "default" {
        return Err(EngineError::Config(format!(
            "{what} must not be the customer's user \"default\""
        )));
    }
    Ok(())
}

fn check_secret(secret: &str, what: &str) -> Result<(), EngineError> {
    if secret.is_empty() || !secret.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(EngineError::Config(format!(
            "{what} must be non-empty printable ASCII without spaces"
        )));
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), EngineError> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b':' | b'_'));
    if !ok {
        return Err(EngineError::Config(format!(
            "master host must be a host name or IP address, got {host:?}"
        )));
    }
    Ok(())
}

fn path_str(p: &Path) -> Result<&str, EngineError> {
    let s = p
        .to_str()
        .ok_or_else(|| EngineError::Config(format!("path {} is not valid UTF-8", p.display())))?;
    if s.chars().any(char::is_control) {
        return Err(EngineError::Config(format!(
            "path {s:?} contains control characters"
        )));
    }
    Ok(s)
}

/// A user parameter must stay one harmless directive line.
pub(crate) fn check_param(name: &str, value: &str) -> Result<(), EngineError> {
    let name_ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !name_ok || value.chars().any(char::is_control) {
        return Err(EngineError::Config(format!(
            "parameter {name:?} cannot be written to redis.conf"
        )));
    }
    Ok(())
}

/// A double-quoted redis.conf string (redis' parser understands `\\` and `\"`). Callers
/// have already refused control characters.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// For the comment line naming the node: nothing may end the comment early.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::Duration;

    fn spec(role: Role) -> NodeSpec {
        NodeSpec {
            name: "crs-test-master".into(),
            host: String::new(),
            role,
            port: 7001,
            instance: "nodes".into(),
            maxmemory_mb: 100,
            default_password_sha256: acl_sha256_hex("pw").to_uppercase(),
            admin_user: "crsd".into(),
            admin_secret: "admin-secret".into(),
            repl_user: "crsd-repl".into(),
            repl_secret: "repl-secret".into(),
            params: Vec::new(),
            cluster: None,
            master: match role {
                Role::Master => None,
                Role::Replica => Some(("127.0.0.1".into(), 7000)),
            },
        }
    }

    fn cfg() -> EngineConfig {
        EngineConfig {
            redis_server: "redis-server".into(),
            bind: "127.0.0.1".into(),
            start_timeout: Duration::from_secs(1),
            ceiling: None,
            root: PathBuf::from("/srv/crsd"),
        }
    }

    #[test]
    fn renders_master_without_plaintext_secrets() {
        let s = spec(Role::Master);
        let paths = NodePaths::new(Path::new("/srv/crsd/nodes/a b\"c")).expect("paths");
        let text = render(&cfg(), &s, &paths).expect("render");
        assert!(text.starts_with(MARKER_PREFIX));
        assert!(text.contains("\nbind 127.0.0.1\n"));
        assert!(text.contains("\nport 7001\n"));
        assert!(text.contains("\nappendonly yes\n"));
        assert!(text.contains("\nmaxmemory 100mb\n"));
        assert!(text.contains("\nmaxmemory-clients 20%\n"));
        assert!(text.contains("\nsanitize-dump-payload clients\n"));
        assert!(text.contains("\ndir \"/srv/crsd/nodes/a b\\\"c\"\n"));
        assert!(text.contains(&format!(
            "\nuser default on #{} ~* &* +@all -@admin -migrate -restore-asking\n",
            acl_sha256_hex("pw")
        )));
        assert!(text.contains("\nuser crsd-repl on #"));
        assert!(!text.contains("admin-secret"));
        assert!(!text.contains("repl-secret"));
        assert!(!text.contains("replicaof"));
    }

    #[test]
    fn renders_replica_with_masterauth() {
        let s = spec(Role::Replica);
        let paths = NodePaths::new(Path::new("/srv/crsd/nodes/a b\"c")).expect("paths");
        let text = render(&cfg(), &s, &paths).expect("render");
        assert!(text.contains("\nreplicaof \"127.0.0.1\" 7000\n"));
        assert!(text.contains("\nmasteruser crsd-repl\n"));
        assert!(text.contains("\nmasterauth \"repl-secret\"\n"));
        assert!(!text.contains("admin-secret"));
    }

    #[test]
    fn renders_cluster_node_without_replicaof() {
        let mut s = spec(Role::Master);
        s.cluster = Some(crate::ClusterSettings {
            node_timeout_ms: 1500,
        });
        let paths = NodePaths::new(Path::new("/srv/crsd/nodes/n")).expect("paths");
        let text = render(&cfg(), &s, &paths).expect("render");
        for wanted in [
            "\ncluster-enabled yes\n",
            "\ncluster-config-file \"nodes.conf\"\n",
            "\ncluster-node-timeout 1500\n",
            "\ncluster-port 17001\n",
            "\ncluster-announce-ip 127.0.0.1\n",
            "\ncluster-announce-port 7001\n",
            "\nmasteruser crsd-repl\n",
        ] {
            assert!(text.contains(wanted), "{wanted:?} missing");
        }
        assert!(!text.contains("replicaof"));
        // A replica of a cluster follows whom the cluster says, never its spec.
        s.role = Role::Replica;
        s.master = Some(("127.0.0.1".into(), 7000));
        assert!(render(&cfg(), &s, &paths).is_err());
        // Its bus would not fit in a port number.
        s.master = None;
        s.port = 60000;
        assert!(render(&cfg(), &s, &paths).is_err());
    }

    #[test]
    fn refuses_what_could_break_the_file() {
        let paths = NodePaths::new(Path::new("/srv/x")).expect("paths");
        let mut s = spec(Role::Master);
        s.admin_user = "crsd\nuser evil on nopass".into();
        assert!(render(&cfg(), &s, &paths).is_err());
        let mut s = spec(Role::Master);
        s.maxmemory_mb = 0;
        assert!(render(&cfg(), &s, &paths).is_err());
        let mut s = spec(Role::Master);
        s.default_password_sha256 = "abc".into();
        assert!(render(&cfg(), &s, &paths).is_err());
        let mut s = spec(Role::Master);
        s.default_password_sha256 = String::new();
        let conf = render(&cfg(), &s, &paths).unwrap();
        assert!(
            conf.contains(
                "\nuser default on nopass ~* &* +@all -@admin -migrate -restore-asking\n"
            ),
            "{conf}"
        );
        let mut s = spec(Role::Master);
        s.repl_secret = "two words".into();
        assert!(render(&cfg(), &s, &paths).is_err());
        let mut s = spec(Role::Replica);
        s.master = None;
        assert!(render(&cfg(), &s, &paths).is_err());
        let mut c = cfg();
        c.bind = "127.0.0.1 0.0.0.0".into();
        assert!(render(&c, &spec(Role::Master), &paths).is_err());
    }

    #[test]
    fn marker_depends_on_spec() {
        let s = spec(Role::Master);
        let paths = NodePaths::new(Path::new("/srv/crsd/nodes/a b\"c")).expect("paths");
        let a = render(&cfg(), &s, &paths).expect("render");
        let mut s2 = s.clone();
        s2.maxmemory_mb = 200;
        let b = render(&cfg(), &s2, &paths).expect("render");
        assert_eq!(a, render(&cfg(), &s, &paths).expect("render"));
        assert_ne!(a.lines().next(), b.lines().next());
    }
}
