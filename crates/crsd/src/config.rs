//! Typed configuration: a TOML file (every key optional, named defaults), then flags and
//! environment on top. Load errors name the file.

use crsd_core::catalog::Catalog;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Metadata database, instance folders and credentials live here.
    pub data_dir: PathBuf,
    /// HTTP(S) listener of the API.
    pub listen: SocketAddr,
    /// Time zone of the times the APIs print and parse (IANA name).
    pub time_zone: String,
    pub tls: Tls,
    pub instances: Instances,
    pub api: Api,
    pub catalog: Catalog,
    pub accounts: Accounts,
    pub loops: Loops,
    pub backups: Backups,
    pub ha: Ha,
    pub metrics: Metrics,
    pub log: Log,
    pub monitor: Monitor,
    /// The file this config was read from (not a setting): Sentinel's address hook reads it
    /// again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// crsd's log, on standard error.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// `text` (colours only on a terminal) or `json` (one object a line, for journald and
    /// log shippers).
    pub format: LogFormat,
}

/// See [`Log::format`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// crsd's own metrics for Prometheus, on a listener of their own: the operator's, not the
/// tenants' (no authentication), so bind it to loopback or a management network.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Address of the listener that serves `GET /metrics` and `GET /sd/nodes` (port 0: any
    /// free port, logged at start); empty: no listener.
    pub listen: String,
    /// Address the host's redis exporter serves per-node metrics on (`/scrape?target=...`,
    /// listed by `/sd/nodes`); empty: no exporter. Like `listen`, the operator's.
    pub exporter_listen: String,
    /// The exporter program (Debian's `prometheus-redis-exporter`).
    pub exporter: PathBuf,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            listen: "127.0.0.1:9751".into(),
            exporter_listen: "127.0.0.1:9752".into(),
            exporter: PathBuf::from("prometheus-redis-exporter"),
        }
    }
}

impl Metrics {
    /// The exporter's address; `None` when disabled.
    pub fn exporter_addr(&self) -> Result<Option<SocketAddr>, String> {
        let listen = self.exporter_listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        match listen.parse::<SocketAddr>() {
            Ok(a) if a.port() != 0 => Ok(Some(a)),
            _ => Err(format!(
                "metrics.exporter_listen: {listen:?} is not an address and a port other than 0 (e.g. 127.0.0.1:9752)"
            )),
        }
    }

    /// The listener's address; `None` when disabled.
    pub fn addr(&self) -> Result<Option<SocketAddr>, String> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        listen.parse().map(Some).map_err(|_| {
            format!("metrics.listen: {listen:?} is not an address and port (e.g. 127.0.0.1:9751)")
        })
    }
}

/// Failover and stable addresses: crsd runs a set of Redis Sentinel processes and one
/// HAProxy for the host, detached like the redis-servers (they outlive crsd).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Ha {
    /// The redis-sentinel binary (Debian's package).
    pub redis_sentinel: PathBuf,
    /// The haproxy binary (Debian's package).
    pub haproxy: PathBuf,
    /// One Sentinel process per port, listening on `instances.bind`.
    pub sentinel_ports: Vec<u16>,
    /// How many sentinels must agree that a master is down before one fails it over.
    pub quorum: u32,
    /// A master that answers nothing for this long is down (Sentinel's
    /// `down-after-milliseconds`). 500 gives a failover in about a second. Not below 400:
    /// right after a switch a sentinel reaches the new master only after its reconnect
    /// period, which crsd sets to 200 ms (`SENTINEL DEBUG`); with Sentinel's own 1 s period
    /// 500 made sentinels fail a live new master over again in 4 of 8 measured failovers.
    /// A host whose masters may stall longer than this (swap, an overloaded machine) wants
    /// more.
    pub down_after_ms: u64,
    /// Sentinel's `failover-timeout` (a failover that does not finish in it is retried; no
    /// second failover of one instance within twice this).
    pub failover_timeout_ms: u64,
    /// How often the proxy checks which node is the master (faster, 100 ms, while a node
    /// changes state).
    pub check_interval_ms: u64,
    /// A dead master whose replicas live is left to Sentinel this long; then crsd starts it
    /// again in place (Sentinel could not promote any replica).
    pub failover_grace_secs: u64,
    /// The cluster edition fails itself over (Redis Cluster): a node silent this long is
    /// failed and its replica promoted (`cluster-node-timeout`). Measured here: every slot
    /// writable again 2.5 s after a kill -9 at 1000, 4 s at 2000.
    pub cluster_node_timeout_ms: u64,
}

impl Default for Ha {
    fn default() -> Ha {
        Ha {
            redis_sentinel: PathBuf::from("redis-sentinel"),
            haproxy: PathBuf::from("haproxy"),
            sentinel_ports: vec![26379, 26380, 26381],
            quorum: 2,
            down_after_ms: 500,
            failover_timeout_ms: 3000,
            check_interval_ms: 500,
            failover_grace_secs: 10,
            cluster_node_timeout_ms: 1000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain; HTTPS when set together with `key` (`crsd tls init` makes a
    /// private CA and a certificate).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// An HTTPS listener of its own beside `listen`, which then stays plain HTTP; empty:
    /// `listen` itself speaks HTTPS when `cert` and `key` are set.
    pub listen: String,
}

impl Tls {
    /// The HTTPS listener's own address; `None` when `listen` is empty.
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, String> {
        let listen = self.listen.trim();
        if listen.is_empty() {
            return Ok(None);
        }
        if self.cert.is_none() || self.key.is_none() {
            return Err("tls.listen needs tls.cert and tls.key".into());
        }
        listen.parse().map(Some).map_err(|_| {
            format!("tls.listen: {listen:?} is not an address and port (e.g. 127.0.0.1:9443)")
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Instances {
    /// The only address redis-server processes listen on.
    pub bind: String,
    /// The address users are told to connect to (`wanIp`); the bind address when empty.
    pub host: String,
    /// Addresses for instances of their own, like a cloud's VIPs: IPs or CIDR ranges of this
    /// host (e.g. `["127.0.1.0/24"]` on one host: all of 127/8 is loopback). When set, every
    /// new instance gets one address, at the port its client asked for (default 6379; 9736
    /// for Capital Online), held by its current master with no proxy in between, and each
    /// node one more address at that port. Empty: instances share `host` and are served by
    /// the proxy on ports of the range.
    pub address_pool: Vec<String>,
    /// Ports handed to instances (two per instance: master and replica), inclusive.
    pub port_min: u16,
    pub port_max: u16,
    /// The redis-server binary (Debian's package).
    pub redis_server: PathBuf,
    /// How long a redis-server may take to answer PING after start.
    pub start_timeout_secs: u64,
    /// Whether users may ask for password-less instances (API 3.0 `NoAuth`). Off: every
    /// instance needs a password.
    pub allow_no_auth: bool,
    /// Run each redis-server under a kernel memory and CPU ceiling (a cgroup under crsd's
    /// own, v1 or v2). Where the host offers none crsd warns at start and runs without.
    pub ceiling: bool,
    /// The memory ceiling is `maxmemory` plus this percentage of it, but at least
    /// `memory_headroom_min_mb` more: room for Lua, a fork's copy-on-write (replica sync,
    /// BGSAVE, AOF rewrite: up to +41 % measured with every key rewritten during the fork) and
    /// redis-server itself.
    pub memory_headroom_percent: u64,
    pub memory_headroom_min_mb: u64,
    /// CPU share under contention, cgroup v2 scale (1-10000, 100 = an ordinary process).
    pub cpu_weight: u64,
    /// Hard cap per redis-server in percent of one CPU (100 = one core); 0 = none.
    pub cpu_quota_percent: u64,
    /// The warm pool: empty redis-servers kept running for creates to take, so a create
    /// starts no process (standard instances take master and replicas from `warm_nodes`,
    /// cluster instances from `warm_cluster_nodes`, all of an instance's or none). Each
    /// holds a port of the range and a few MB. 0: every create starts its nodes. Not used
    /// with `address_pool`.
    pub warm_nodes: usize,
    pub warm_cluster_nodes: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Host names clients may sign with besides the Host header they send.
    pub public_hosts: Vec<String>,
    /// Allowed distance of a request's Timestamp from crsd's clock, both ways.
    pub replay_window_secs: i64,
    /// Per account and action: sustained requests per second (0 = unlimited) and burst.
    pub rate_per_second: f64,
    pub rate_burst: f64,
    /// Time allowed for a request head (and a TLS handshake) to arrive; also closes idle
    /// keep-alive connections.
    pub header_timeout_secs: u64,
    /// Time allowed for a whole request body to arrive.
    pub body_timeout_secs: u64,
    /// Connections open at once; 0 = the open-file limit minus `fd_reserve`.
    pub max_connections: usize,
    /// Descriptors kept free of connections for the supervisor, the store and redis admin
    /// connections (when the limit is small, at most half of it).
    pub fd_reserve: u64,
    /// Largest request head (request line and headers); longer ones get a bare 431.
    pub max_head_bytes: usize,
    /// Longest query string answered in the dialect's shape rather than parsed.
    pub max_query_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Body bytes held at once across all requests; past it requests are refused as busy.
    pub body_budget_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Accounts {
    /// Balance (cents) of the account made on first start.
    pub bootstrap_balance: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backups {
    /// Folder of the local backup store; `<data_dir>/backups` when empty.
    pub dir: Option<PathBuf>,
    /// Backups older than this many days are expired (file removed, listed as -1).
    pub retention_days: i64,
    /// Local time (`time_zone`) of the daily automatic backup, "HH:MM".
    pub daily_at: String,
    /// Manual backups allowed per instance and day.
    pub manual_per_day: i64,
    /// How long a download URL stays valid.
    pub url_ttl_hours: u64,
    /// Start of `data.intranet` / `data.extranet` download URLs, e.g. "http://10.0.0.5:9750".
    /// Empty: this listener's own address (http, or https with [tls]).
    pub intranet_base_url: String,
    pub extranet_base_url: String,
    /// How long one snapshot (BGSAVE on the replica) may take.
    pub snapshot_timeout_secs: u64,
    /// Free space kept on the data dir's and the backup store's filesystems: the smaller of
    /// these two (0 in either: no reserve). A backup or restore that would leave less (its
    /// expected size counted) is refused with each dialect's "try later" error.
    pub min_free_bytes: u64,
    pub min_free_percent: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Loops {
    /// Supervisor period (process checks), milliseconds.
    pub supervise_every_ms: u64,
    /// Deadline checks period, seconds.
    pub expiry_every_secs: u64,
    /// Tasks run at once.
    pub task_concurrency: usize,
    /// A failed task's undo that fails is retried this many times, waiting from 1 s doubling
    /// up to `undo_backoff_max_secs` between attempts; then the task ends in error and
    /// releases its instance (the log says what to check).
    pub undo_attempts: i64,
    pub undo_backoff_max_secs: u64,
}

/// The history of per-node figures crsd keeps itself, so that its API and console show
/// monitoring without Prometheus: every node of every running instance is sampled once per
/// interval (one `INFO`) and each sample is kept `retention_hours`. The store holds at most
/// about nodes x retention / interval rows (1,440 a node at the defaults).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Monitor {
    /// Seconds between two samples of a node.
    pub sample_interval_secs: u64,
    /// Hours a sample is kept; at least one interval.
    pub retention_hours: u64,
}

impl Default for Monitor {
    fn default() -> Monitor {
        Monitor {
            sample_interval_secs: 60,
            retention_hours: 24,
        }
    }
}

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 9750)),
            time_zone: "UTC".into(),
            tls: Tls::default(),
            instances: Instances::default(),
            api: Api::default(),
            catalog: Catalog::default(),
            accounts: Accounts::default(),
            loops: Loops::default(),
            backups: Backups::default(),
            ha: Ha::default(),
            metrics: Metrics::default(),
            log: Log::default(),
            monitor: Monitor::default(),
            source: None,
        }
    }
}

impl Default for Backups {
    fn default() -> Backups {
        Backups {
            dir: None,
            retention_days: 7,
            daily_at: "03:00".into(),
            manual_per_day: 24,
            url_ttl_hours: 12,
            intranet_base_url: String::new(),
            extranet_base_url: String::new(),
            snapshot_timeout_secs: 3600,
            min_free_bytes: 1 << 30,
            min_free_percent: 5,
        }
    }
}

impl Config {
    /// The addresses of `instances.address_pool`, in order, without duplicates: a CIDR range
    /// gives its host addresses. At most [`MAX_POOL`] of them.
    pub fn address_pool(&self) -> Result<Vec<std::net::IpAddr>, String> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for entry in &self.instances.address_pool {
            let entry = entry.trim();
            let addrs: Vec<std::net::IpAddr> = if let Ok(ip) = entry.parse::<std::net::IpAddr>() {
                vec![ip]
            } else if let Ok(net) = entry.parse::<ipnet::IpNet>() {
                net.hosts().take(MAX_POOL + 1).collect()
            } else {
                return Err(format!(
                    "instances.address_pool: {entry:?} is neither an IP address nor a CIDR range"
                ));
            };
            for ip in addrs {
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(format!(
                        "instances.address_pool: {ip} cannot be an instance's address"
                    ));
                }
                if seen.insert(ip) {
                    out.push(ip);
                }
                if out.len() > MAX_POOL {
                    return Err(format!(
                        "instances.address_pool holds more than {MAX_POOL} addresses"
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// The most warm nodes (both kinds) the pool may keep.
pub const MAX_WARM: usize = 64;

/// The most addresses `instances.address_pool` may hold.
pub const MAX_POOL: usize = 65_536;

impl Backups {
    pub fn daily_time(&self) -> Option<chrono::NaiveTime> {
        chrono::NaiveTime::parse_from_str(self.daily_at.trim(), "%H:%M").ok()
    }
}

impl Default for Instances {
    fn default() -> Instances {
        Instances {
            bind: "127.0.0.1".into(),
            host: String::new(),
            address_pool: Vec::new(),
            port_min: 16400,
            port_max: 17399,
            redis_server: PathBuf::from("redis-server"),
            start_timeout_secs: 15,
            allow_no_auth: false,
            ceiling: true,
            memory_headroom_percent: 50,
            memory_headroom_min_mb: 64,
            cpu_weight: 100,
            cpu_quota_percent: 100,
            warm_nodes: 4,
            warm_cluster_nodes: 6,
        }
    }
}

impl Default for Api {
    fn default() -> Api {
        let d = crsd_api::ApiConfig::default();
        Api {
            public_hosts: d.public_hosts,
            replay_window_secs: d.replay_window_secs,
            rate_per_second: d.rate_per_second,
            rate_burst: d.rate_burst,
            header_timeout_secs: 10,
            body_timeout_secs: d.limits.body_timeout.as_secs(),
            max_connections: 0,
            fd_reserve: 256,
            max_head_bytes: 64 << 10,
            max_query_bytes: d.limits.max_query_bytes,
            max_body_bytes: d.limits.max_body_bytes,
            body_budget_bytes: d.limits.body_budget_bytes,
        }
    }
}

impl Api {
    /// What the API's gate enforces.
    pub fn limits(&self) -> crsd_api::gate::Limits {
        crsd_api::gate::Limits {
            max_body_bytes: self.max_body_bytes,
            max_query_bytes: self.max_query_bytes,
            body_timeout: std::time::Duration::from_secs(self.body_timeout_secs),
            body_budget_bytes: self.body_budget_bytes,
        }
    }
}

impl Default for Accounts {
    fn default() -> Accounts {
        Accounts {
            bootstrap_balance: 100_000_000,
        }
    }
}

impl Default for Loops {
    fn default() -> Loops {
        Loops {
            supervise_every_ms: 1000,
            expiry_every_secs: 30,
            task_concurrency: 8,
            undo_attempts: 8,
            undo_backoff_max_secs: 300,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config file {path}")]
    Parse {
        path: String,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let mut cfg = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                source,
            },
            other => other,
        })?;
        cfg.source = Some(std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()));
        Ok(cfg)
    }

    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: String::new(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.time_zone.parse::<chrono_tz::Tz>().is_err() {
            return bad("time_zone is not an IANA time zone name");
        }
        if self.instances.port_min == 0 || self.instances.port_min > self.instances.port_max {
            return bad("instances.port_min must be > 0 and <= instances.port_max");
        }
        if self.instances.bind.parse::<std::net::IpAddr>().is_err() {
            return bad("instances.bind must be an IP address");
        }
        if let Err(e) = self.address_pool() {
            return bad(&e);
        }
        if !(1..=10000).contains(&self.instances.cpu_weight) {
            return bad("instances.cpu_weight must be 1-10000");
        }
        let range = usize::from(self.instances.port_max - self.instances.port_min) + 1;
        if self.instances.warm_nodes + self.instances.warm_cluster_nodes > MAX_WARM.min(range / 4) {
            return bad(&format!(
                "instances.warm_nodes + warm_cluster_nodes must be at most {MAX_WARM} and a \
                 quarter of the port range"
            ));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return bad("tls.cert and tls.key go together");
        }
        if self.catalog.zones.is_empty() || self.catalog.periods.is_empty() {
            return bad("catalog needs at least one zone and one period");
        }
        if self.catalog.extra_replica_percent < 0 {
            return bad("catalog.extra_replica_percent must be 0 or more");
        }
        let mut types = self.catalog.zones.iter().flat_map(|z| &z.types);
        if types.any(|t| t.min_replicas < 1 || t.min_replicas > t.max_replicas) {
            return bad("catalog types need 1 <= min_replicas <= max_replicas");
        }
        let mut sites: Vec<String> = self.catalog.zones.iter().map(|z| z.site_id()).collect();
        sites.sort();
        if sites.windows(2).any(|w| w[0] == w[1]) {
            return bad("catalog zones need distinct site_id values");
        }
        let api = &self.api;
        if api.header_timeout_secs < 1 || api.body_timeout_secs < 1 {
            return bad("api.header_timeout_secs and api.body_timeout_secs must be at least 1");
        }
        if api.max_head_bytes < 8192 {
            return bad("api.max_head_bytes must be at least 8192");
        }
        if api.max_query_bytes >= api.max_head_bytes {
            return bad("api.max_query_bytes must be below api.max_head_bytes");
        }
        if api.max_body_bytes < 1 || api.body_budget_bytes < api.max_body_bytes {
            return bad("api.max_body_bytes must be at least 1 and at most api.body_budget_bytes");
        }
        if self.backups.daily_time().is_none() {
            return bad("backups.daily_at must be HH:MM");
        }
        if self.backups.retention_days < 1 || self.backups.url_ttl_hours < 1 {
            return bad("backups.retention_days and backups.url_ttl_hours must be at least 1");
        }
        if self.backups.min_free_percent > 100 {
            return bad("backups.min_free_percent must be at most 100");
        }
        if self.loops.undo_attempts < 0 || self.loops.undo_backoff_max_secs < 1 {
            return bad(
                "loops.undo_attempts must not be negative, loops.undo_backoff_max_secs at least 1",
            );
        }
        if let Err(e) = self.metrics.addr() {
            return bad(&e);
        }
        if let Err(e) = self.metrics.exporter_addr() {
            return bad(&e);
        }
        if let Err(e) = self.tls.listen_addr() {
            return bad(&e);
        }
        let monitor = &self.monitor;
        if monitor.sample_interval_secs < 1
            || monitor.retention_hours < 1
            || monitor.retention_hours.saturating_mul(3600) < monitor.sample_interval_secs
        {
            return bad(
                "monitor.sample_interval_secs and monitor.retention_hours must be at least 1, \
                 and the retention at least one interval",
            );
        }
        if self.backups.manual_per_day < 0 {
            return bad("backups.manual_per_day must not be negative");
        }
        for url in [
            &self.backups.intranet_base_url,
            &self.backups.extranet_base_url,
        ] {
            if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
                return bad("backups.*_base_url must start with http:// or https://");
            }
        }
        Ok(())
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.time_zone.parse().unwrap_or(chrono_tz::UTC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_config_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("examples folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                n += 1;
            }
        }
        assert!(n > 0, "no example config found");
    }

    #[test]
    fn empty_file_gives_the_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9750");
        assert_eq!(
            c.metrics.addr().unwrap(),
            Some("127.0.0.1:9751".parse().unwrap())
        );
        let off = Config::parse("[metrics]\nlisten = \"\"").unwrap();
        assert_eq!(off.metrics.addr().unwrap(), None);
        assert_eq!(
            c.catalog
                .buy_price(&crsd_core::spec::Spec::standard(1024, 1), 2, 1),
            16000
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert!(Config::parse("listen = 5").is_err());
        assert!(Config::parse("nonsense = 1").is_err());
        assert!(Config::parse("time_zone = \"Mars/Base\"").is_err());
        assert!(Config::parse("[instances]\nport_min = 10\nport_max = 5").is_err());
        assert!(Config::parse("[backups]\ndaily_at = \"25:00\"").is_err());
        assert!(Config::parse("[backups]\nretention_days = 0").is_err());
        assert!(Config::parse("[backups]\nintranet_base_url = \"ftp://x\"").is_err());
        assert!(Config::parse("[api]\nbody_timeout_secs = 0").is_err());
        assert!(Config::parse("[api]\nmax_head_bytes = 1000").is_err());
        assert!(Config::parse("[api]\nmax_body_bytes = 2048\nbody_budget_bytes = 1024").is_err());
        assert!(Config::parse("[backups]\nmin_free_percent = 101").is_err());
        assert!(Config::parse("[loops]\nundo_backoff_max_secs = 0").is_err());
        assert!(Config::parse("[metrics]\nlisten = \"localhost\"").is_err());
        assert!(Config::parse("[metrics]\nlisten = 9751").is_err());
        assert!(Config::parse("[metrics]\nexporter_listen = \"127.0.0.1:0\"").is_err());
        assert!(Config::parse("[metrics]\nexporter_listen = \"\"").is_ok());
        assert_eq!(
            Config::parse("[log]\nformat = \"json\"")
                .unwrap()
                .log
                .format,
            LogFormat::Json
        );
        assert!(Config::parse("[log]\nformat = \"xml\"").is_err());
        assert!(Config::parse("[tls]\nlisten = \"127.0.0.1:9443\"").is_err());
        assert!(Config::parse(
            "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nlisten = \"127.0.0.1:9443\""
        )
        .is_ok());
        assert!(Config::parse("[monitor]\nsample_interval_secs = 0").is_err());
        assert!(Config::parse("[monitor]\nretention_hours = 0").is_err());
        assert!(
            Config::parse("[monitor]\nsample_interval_secs = 7200\nretention_hours = 1").is_err()
        );
        assert!(
            Config::parse("[monitor]\nsample_interval_secs = 3600\nretention_hours = 1").is_ok()
        );
        let zone = |id: i64| {
            format!(
                "[[catalog.zones]]\nid = {id}\nname = \"z\"\nregion_id = 1\nsite_id = \"S\"\n\
                 [[catalog.zones.types]]\ntype_id = 2\ntype_name = \"t\"\nmin_mem_mb = 1024\n\
                 max_mem_mb = 2048\nmin_buy_num = 1\nmax_buy_num = 1\n"
            )
        };
        assert!(Config::parse(&zone(1)).is_ok());
        assert!(Config::parse(&format!("{}min_replicas = 0\n", zone(1))).is_err());
        assert!(Config::parse(&format!("{}max_replicas = 0\n", zone(1))).is_err());
        assert!(Config::parse(&format!("{}max_replicas = 3\n", zone(1))).is_ok());
        assert!(Config::parse("[catalog]\nextra_replica_percent = -1").is_err());
        assert!(Config::parse(&format!("{}{}", zone(1), zone(2))).is_err());
    }
}

#[cfg(test)]
mod example {
    use super::*;

    /// examples/crsd.toml is the defaults, written out: parsing it gives `Config::default()`.
    #[test]
    fn the_example_config_is_the_defaults() {
        let example = Config::parse(include_str!("../../../examples/crsd.toml"))
            .expect("examples/crsd.toml parses");
        let as_json = |c: &Config| serde_json::to_value(c).unwrap();
        assert_eq!(as_json(&example), as_json(&Config::default()));
    }

    #[test]
    fn a_warm_pool_larger_than_a_quarter_of_the_ports_is_refused() {
        let ok = Config::parse("[instances]\nport_min = 7000\nport_max = 7039\nwarm_nodes = 4\nwarm_cluster_nodes = 6\n");
        assert!(ok.is_ok(), "{ok:?}");
        for toml in [
            "[instances]\nport_min = 7000\nport_max = 7039\nwarm_nodes = 5\nwarm_cluster_nodes = 6\n",
            "[instances]\nwarm_nodes = 65\nwarm_cluster_nodes = 0\n",
        ] {
            let err = Config::parse(toml).expect_err(toml).to_string();
            assert!(err.contains("warm_nodes + warm_cluster_nodes"), "{err}");
        }
    }
}
